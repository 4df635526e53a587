/**
 * The LoCoMo file as the recall benchmark sees it: per sample, its conversation (fed to the memory system
 * by the normal `locomo` loader) and its questions with parsed gold evidence (never fed to it).
 */
import { z } from 'zod';
import { InvalidInputError } from '../core/errors.js';
import { readJsonArray } from '../ingest/index.js';
import { parseEvidence } from './locomo-evidence.js';

/** LoCoMo's question categories (numbering of the released file). */
export const locomoCategoryNames: Readonly<Record<string, string>> = {
  '1': 'multi-hop',
  '2': 'temporal',
  '3': 'open-domain',
  '4': 'single-hop',
  '5': 'adversarial',
};

/** Categories the recall figures count (5, adversarial, has no answer in the conversation). */
export const scoredLocomoCategories: readonly number[] = [1, 2, 3, 4];

const LocomoSampleJson = z.object({
  sample_id: z.string().min(1),
  conversation: z.record(z.string(), z.unknown()),
  qa: z.array(
    z.object({
      question: z.string(),
      answer: z.union([z.string(), z.number()]).transform(String).optional(),
      category: z.number().int(),
      evidence: z.array(z.unknown()).default([]),
    }),
  ),
});

export interface LocomoQuestion {
  /** `<sample_id>#<index in the sample's qa list>`. */
  readonly questionId: string;
  readonly sampleId: string;
  readonly question: string;
  readonly category: number;
  /** The reference answer (category 5 has an `adversarial_answer` instead: undefined). */
  readonly answer: string | undefined;
  /** Gold source turn ids (`dia_id`s of the sample), parsed from `evidence`. */
  readonly gold: readonly string[];
  /** Evidence ids that name no turn of the sample (dropped). */
  readonly unknownEvidence: readonly string[];
  /** Evidence text that holds no id (dropped). */
  readonly unparseableEvidence: readonly string[];
}

export interface LocomoSample {
  /** Position in the file. */
  readonly index: number;
  readonly sampleId: string;
  /** The sample as parsed JSON and as text, for the `locomo` loader. */
  readonly value: unknown;
  readonly text: string;
  /** `dia_id`s of the conversation's `session_N` turns, in order. */
  readonly turnIds: readonly string[];
  readonly questions: readonly LocomoQuestion[];
}

const sessionKey = /^session_\d+$/;

/** One sample of the file (element `index`); throws InvalidInputError naming the field when it is not one. */
export function locomoSample(value: unknown, index: number, text: string): LocomoSample {
  const parsed = LocomoSampleJson.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = `[${index}].${issue?.path.join('.') ?? ''}`;
    throw new InvalidInputError(`LoCoMo sample ${field}: ${issue?.message ?? 'invalid'}`, field);
  }
  const sample = parsed.data;
  const turnIds = Object.entries(sample.conversation)
    .filter(([key]) => sessionKey.test(key))
    .sort(([a], [b]) => Number(a.slice(8)) - Number(b.slice(8)))
    .flatMap(([, turns]) => (Array.isArray(turns) ? (turns as unknown[]) : []))
    .flatMap((turn) => {
      const id =
        typeof turn === 'object' && turn !== null ? (turn as { dia_id?: unknown }).dia_id : undefined;
      return typeof id === 'string' ? [id] : [];
    });
  const questions = sample.qa.map((qa, i): LocomoQuestion => {
    const evidence = parseEvidence(qa.evidence, turnIds);
    return {
      questionId: `${sample.sample_id}#${i}`,
      sampleId: sample.sample_id,
      question: qa.question,
      category: qa.category,
      answer: qa.answer,
      gold: evidence.ids,
      unknownEvidence: evidence.unknown,
      unparseableEvidence: evidence.unparseable,
    };
  });
  return { index, sampleId: sample.sample_id, value, text, turnIds, questions };
}

/** The first `limit` samples of a LoCoMo file (all without a limit). */
export async function readLocomoSamples(
  path: string,
  options: { limit?: number | undefined } = {},
): Promise<LocomoSample[]> {
  const samples: LocomoSample[] = [];
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  if (limit <= 0) return samples;
  for await (const element of readJsonArray(path)) {
    if (!element.ok) throw new InvalidInputError(element.message, 'data');
    samples.push(locomoSample(element.value, element.index, element.text));
    if (samples.length >= limit) break;
  }
  return samples;
}

/**
 * Whether a question's category counts in the recall figures (1–4). Of those, questions without any
 * parseable gold turn are counted apart by the metrics, not scored.
 */
export function isScoredLocomoCategory(category: number): boolean {
  return scoredLocomoCategories.includes(category);
}
