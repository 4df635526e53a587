/**
 * A LongMemEval file (oracle, S or M; plain or gzip) as the recall benchmark sees it: per question, its
 * haystack (fed to the memory system by the normal `longmemeval` loader, which drops the gold labels) and
 * the question with its gold evidence (never fed to it). Streamed: the S file is ~100 MB of JSON.
 */
import { z } from 'zod';
import { InvalidInputError } from '../core/errors.js';
import { readJsonArray } from '../ingest/index.js';

/** LongMemEval's question types, in the order of its paper. */
export const longMemEvalQuestionTypes = [
  'single-session-user',
  'single-session-assistant',
  'single-session-preference',
  'multi-session',
  'knowledge-update',
  'temporal-reasoning',
] as const;

const Turn = z.object({ role: z.string(), has_answer: z.unknown().optional() });

const LongMemEvalQuestionJson = z.object({
  question_id: z.string().min(1),
  question_type: z.string().min(1),
  question: z.string(),
  answer: z.union([z.string(), z.number()]).transform(String),
  question_date: z.string().optional(),
  haystack_session_ids: z.array(z.string()),
  haystack_sessions: z.array(z.array(Turn)),
});

export interface LongMemEvalQuestion {
  /** Position in the file. */
  readonly index: number;
  readonly questionId: string;
  readonly questionType: string;
  readonly question: string;
  readonly answer: string;
  readonly questionDate: string | undefined;
  /** `_abs` questions: the haystack does not hold the answer. */
  readonly abstention: boolean;
  /** Gold source ids (`<session_id>:<j>`) of the user turns marked `has_answer`. */
  readonly gold: readonly string[];
  /** The same for assistant turns (single-session-assistant questions): reported, not scored. */
  readonly assistantGold: readonly string[];
  /** Turns in the haystack. */
  readonly turns: number;
  /** The question as parsed JSON and as text, for the `longmemeval` loader. */
  readonly value: unknown;
  readonly text: string;
}

/** One question of the file (element `index`); throws InvalidInputError naming the field when it is not one. */
export function longMemEvalQuestion(value: unknown, index: number, text: string): LongMemEvalQuestion {
  const parsed = LongMemEvalQuestionJson.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = `[${index}].${issue?.path.join('.') ?? ''}`;
    throw new InvalidInputError(`LongMemEval question ${field}: ${issue?.message ?? 'invalid'}`, field);
  }
  const q = parsed.data;
  const gold = new Set<string>();
  const assistantGold = new Set<string>();
  let turns = 0;
  q.haystack_sessions.forEach((session, i) => {
    const sessionId = q.haystack_session_ids[i];
    session.forEach((turn, j) => {
      turns++;
      if (sessionId === undefined || turn.has_answer !== true) return;
      (turn.role === 'user' ? gold : assistantGold).add(`${sessionId}:${j}`);
    });
  });
  return {
    index,
    questionId: q.question_id,
    questionType: q.question_type,
    question: q.question,
    answer: q.answer,
    questionDate: q.question_date,
    abstention: q.question_id.endsWith('_abs'),
    gold: [...gold],
    assistantGold: [...assistantGold],
    turns,
    value,
    text,
  };
}

/** The first `limit` questions of a LongMemEval file, one at a time. */
export async function* readLongMemEvalQuestions(
  path: string,
  options: { limit?: number | undefined } = {},
): AsyncGenerator<LongMemEvalQuestion> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  if (limit <= 0) return;
  let count = 0;
  for await (const element of readJsonArray(path)) {
    if (!element.ok) throw new InvalidInputError(element.message, 'data');
    yield longMemEvalQuestion(element.value, element.index, element.text);
    if (++count >= limit) return;
  }
}

/** Whether a question counts in the recall figures: not an abstention, and gold on the user side. */
export function isScoredLongMemEvalQuestion(question: LongMemEvalQuestion): boolean {
  return !question.abstention && question.gold.length > 0;
}
