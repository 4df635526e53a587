import { z } from 'zod';
import type { FinishReason, JsonSchemaFormat } from '../../../core/ports/chat-model.js';

/** The kinds an LLM may give a memory (`summary` is the extractive path's). */
export const extractedKinds = ['fact', 'preference', 'commitment', 'relation'] as const;
export type ExtractedKind = (typeof extractedKinds)[number];

/** The answer's shape, sent as structured output where the endpoint takes it (strict: all required). */
export const extractionSchema: JsonSchemaFormat = {
  name: 'memories',
  schema: {
    type: 'object',
    properties: {
      data: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            source_ids: { type: 'array', items: { type: 'integer' } },
            kind: { type: 'string', enum: [...extractedKinds] },
            speaker: { type: 'string' },
            fact: { type: 'string' },
          },
          required: ['source_ids', 'kind', 'speaker', 'fact'],
          additionalProperties: false,
        },
      },
    },
    required: ['data'],
    additionalProperties: false,
  },
};

const sourceId = z.union([
  z.number().int(),
  z
    .string()
    .regex(/^\s*\d+\s*$/)
    .transform(Number),
]);

/**
 * One fact as models write it: `source_ids` (or LightMem's single `source_id`), a kind (unknown or
 * missing: `fact`), an optional speaker. Lenient on form, strict on content: every id must be an integer.
 */
const Fact = z
  .looseObject({
    source_ids: z.union([z.array(sourceId), sourceId]).optional(),
    source_id: z.union([z.array(sourceId), sourceId]).optional(),
    kind: z.string().optional(),
    speaker: z.string().optional(),
    fact: z.string().trim().min(1),
  })
  .transform((raw, context) => {
    const ids = raw.source_ids ?? raw.source_id;
    const list = ids === undefined ? [] : Array.isArray(ids) ? ids : [ids];
    if (list.length === 0) {
      context.addIssue({ code: 'custom', message: 'cites no source_ids', path: ['source_ids'] });
      return z.NEVER;
    }
    const kind = (extractedKinds as readonly string[]).includes(raw.kind ?? '')
      ? (raw.kind as ExtractedKind)
      : 'fact';
    return { sourceIds: [...new Set(list)], kind, speaker: raw.speaker?.trim() ?? '', fact: raw.fact };
  });

const Answer = z.union([
  z.looseObject({ data: z.array(Fact) }),
  z.array(Fact).transform((data) => ({ data })),
]);

export type AnswerFact = z.infer<typeof Fact>;

export interface RejectedFact {
  readonly fact: string;
  readonly sourceIds: readonly number[];
}

export type ParsedAnswer =
  | { readonly ok: true; readonly facts: readonly AnswerFact[]; readonly rejected: readonly RejectedFact[] }
  | { readonly ok: false; readonly truncated: boolean; readonly error: string };

/**
 * Decodes an extraction answer for a batch whose ids run 1…`turnCount`. A fact citing an id outside the
 * batch is rejected whole (not clamped onto another turn); an answer whose every fact is rejected, that is
 * cut at max_tokens, or that does not decode is not ok, with an error to quote in a repair request.
 */
export function parseAnswer(text: string, finishReason: FinishReason, turnCount: number): ParsedAnswer {
  if (finishReason === 'length') {
    return {
      ok: false,
      truncated: true,
      error: 'the answer was cut off at the token limit before the JSON was complete',
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(jsonPart(text));
  } catch (error) {
    return {
      ok: false,
      truncated: false,
      error: `the answer is not valid JSON (${(error as Error).message})`,
    };
  }
  const decoded = Answer.safeParse(json);
  if (!decoded.success) {
    const issue = decoded.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '' : ` at ${issue.path.join('.')}`;
    return {
      ok: false,
      truncated: false,
      error: `the answer does not match {"data": [{"source_ids": [int], "kind", "speaker", "fact"}]}${where}: ${issue?.message ?? 'invalid'}`,
    };
  }
  const facts: AnswerFact[] = [];
  const rejected: RejectedFact[] = [];
  const placeholders = decoded.data.data.filter((fact) => isPlaceholder(fact.fact));
  if (placeholders.length > 0) {
    return {
      ok: false,
      truncated: false,
      error: `${placeholders.length} facts are placeholders (${JSON.stringify(placeholders[0]?.fact)}), not memories taken from the input`,
    };
  }
  for (const fact of decoded.data.data) {
    if (fact.sourceIds.every((id) => id >= 1 && id <= turnCount)) facts.push(fact);
    else rejected.push({ fact: fact.fact, sourceIds: fact.sourceIds });
  }
  if (facts.length === 0 && rejected.length > 0) {
    const ids = [...new Set(rejected.flatMap((r) => r.sourceIds))].filter((id) => id < 1 || id > turnCount);
    return {
      ok: false,
      truncated: false,
      error: `every fact cites ids outside the input (${ids.slice(0, 5).join(', ')}); the input's ids are 1 to ${turnCount}`,
    };
  }
  return { ok: true, facts, rejected };
}

/** A fact that only names the slot it fills (`<memory>`, `...`, `fact`): a model copying the shape it was shown. */
function isPlaceholder(text: string): boolean {
  const bare = text.trim().toLowerCase();
  return (
    /^<[^>]*>$/.test(bare) ||
    /^[.…\s]*$/.test(bare) ||
    ['fact', 'memory', 'string', 'the memory'].includes(bare)
  );
}

/** The JSON in an answer: without a Markdown fence or prose around the outermost object or array. */
function jsonPart(text: string): string {
  const fenced = /```(?:json)?\s*([\s\S]*?)```/i.exec(text);
  const body = (fenced?.[1] ?? text).trim();
  if (body.startsWith('{') || body.startsWith('[')) return body;
  const start = body.search(/[[{]/);
  const end = Math.max(body.lastIndexOf('}'), body.lastIndexOf(']'));
  return start >= 0 && end > start ? body.slice(start, end + 1) : body;
}
