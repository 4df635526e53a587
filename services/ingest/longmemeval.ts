/**
 * LongMemEval loader (oracle, S or M files; `.json` or `.json.gz`): one user and one conversation per
 * question, its haystack sessions fed turn by turn in the given order, every turn stamped with its
 * session's date (+ its index in seconds, so times are unique and increasing), as in reference §13.1.
 *
 * The file is streamed one question at a time (the S file is ~100 MB of JSON). `has_answer` is a gold
 * label: it is never put in an event, its metadata, or the raw text kept for dead letters.
 */
import { InvalidInputError } from '../core/errors.js';
import { jsonArrayDatasetItems } from './jsonl.js';
import {
  type InputItem,
  datasetFailure as failure,
  decodeTurnInput,
  errorFromSource,
  truncateUtf8,
  utcEpochMs,
} from './turn-input.js';

const longMemEvalDatePattern =
  /^(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?:\s*\(([A-Za-z]{3})\))?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?$/;

/** Parses a LongMemEval date such as `2023/05/20 (Sat) 02:21` as UTC; returns epoch ms. */
export function parseLongMemEvalDate(value: string): number {
  const m = longMemEvalDatePattern.exec(value.trim());
  if (m) {
    // The weekday in parentheses is informative only; the date decides.
    const ms = utcEpochMs(
      Number(m[1]),
      Number(m[2]),
      Number(m[3]),
      Number(m[5]),
      Number(m[6]),
      Number(m[7] ?? 0),
    );
    if (!Number.isNaN(ms)) return ms;
  }
  throw new InvalidInputError(
    `expected a LongMemEval date like "2023/05/20 (Sat) 02:21"; got ${JSON.stringify(value.slice(0, 60))}`,
    'haystack_dates',
  );
}

/**
 * The turn id of turn `j` of a haystack session: `<session_id>:<j>`. A session id that occurs again in
 * the same haystack (LongMemEval-S repeats a few filler sessions, same content at a later date) gets
 * `#<n>` for its n-th occurrence, so turn ids stay unique within the conversation.
 */
export function longMemEvalTurnId(sessionId: string, occurrence: number, j: number): string {
  return `${longMemEvalSessionId(sessionId, occurrence)}:${j}`;
}

function longMemEvalSessionId(sessionId: string, occurrence: number): string {
  return occurrence <= 1 ? sessionId : `${sessionId}#${occurrence}`;
}

/** The dataset's source id (`<session_id>:<j>`) of a turn id made by `longMemEvalTurnId`. */
export function longMemEvalSourceId(turnId: string): string {
  return turnId.replace(/#\d+(?=:\d+$)/, '');
}

/** The text of a question or session with its `has_answer` gold labels taken out (for dead letters). */
export function withoutGoldLabels(json: string): string {
  return json.replace(/,?\s*"has_answer"\s*:\s*(?:true|false|null|"[^"]*")/g, '');
}

const goldKeys = new Set(['has_answer', 'answer', 'answer_session_ids']);
const dropGold = (key: string, value: unknown): unknown => (goldKeys.has(key) ? undefined : value);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Conversation events of one LongMemEval question (element `index` of the file). */
export function* longMemEvalQuestionItems(
  question: unknown,
  index: number,
  tenantId: string,
  text: string,
): Generator<InputItem> {
  const at = `[${index}]`;
  // Only built for a dead letter: stringifying a whole haystack per question would cost seconds.
  const questionRaw = (): string =>
    isRecord(question) ? JSON.stringify(question, dropGold) : withoutGoldLabels(text);
  if (!isRecord(question)) {
    yield failure(at, questionRaw(), at, `${at} must be a LongMemEval question object`);
    return;
  }
  const questionId = question['question_id'];
  if (typeof questionId !== 'string') {
    yield failure(at, questionRaw(), `${at}.question_id`, `${at}.question_id is required (a string)`);
    return;
  }
  const sessions = question['haystack_sessions'];
  const sessionIds = question['haystack_session_ids'];
  const dates = question['haystack_dates'];
  for (const [name, value] of [
    ['haystack_sessions', sessions],
    ['haystack_session_ids', sessionIds],
    ['haystack_dates', dates],
  ] as const) {
    if (!Array.isArray(value)) {
      yield failure(
        at,
        questionRaw(),
        `${at}.${name}`,
        `${at}.${name} is required (an array) in question ${questionId}`,
      );
      return;
    }
  }
  if (!Array.isArray(sessions) || !Array.isArray(sessionIds) || !Array.isArray(dates)) return; // checked above
  if (sessionIds.length !== sessions.length || dates.length !== sessions.length) {
    const field =
      sessionIds.length !== sessions.length ? `${at}.haystack_session_ids` : `${at}.haystack_dates`;
    yield failure(
      at,
      questionRaw(),
      field,
      `${field} must have one entry per haystack session (${sessions.length}) in question ${questionId}; ` +
        `got ${sessionIds.length} session ids and ${dates.length} dates`,
    );
    return;
  }
  const occurrences = new Map<string, number>();
  let seq = 0;
  for (let i = 0; i < sessions.length; i++) {
    const session: unknown = sessions[i];
    const sessionId: unknown = sessionIds[i];
    const date: unknown = dates[i];
    const path = `${at}.haystack_sessions[${i}]`;
    const length = Array.isArray(session) ? session.length : 0;
    const sessionRaw = JSON.stringify({
      question_id: questionId,
      session_id: sessionId ?? null,
      date: date ?? null,
    });
    if (typeof sessionId !== 'string') {
      yield failure(
        path,
        sessionRaw,
        `${at}.haystack_session_ids[${i}]`,
        `${at}.haystack_session_ids[${i}] must be a string`,
      );
      seq += length;
      continue;
    }
    let start: number | undefined;
    let problem = 'is required (a string like "2023/05/20 (Sat) 02:21")';
    if (typeof date === 'string') {
      try {
        start = parseLongMemEvalDate(date);
      } catch (error) {
        problem = error instanceof Error ? error.message : String(error);
      }
    }
    if (start === undefined || !Array.isArray(session)) {
      const field = start === undefined ? `${at}.haystack_dates[${i}]` : path;
      const why = start === undefined ? problem : 'must be an array of turns';
      yield failure(
        path,
        sessionRaw,
        field,
        `${field}: ${why}; the turns of session ${sessionId} were skipped`,
      );
      seq += length; // keep later seqs where they would be
      continue;
    }
    const occurrence = (occurrences.get(sessionId) ?? 0) + 1;
    occurrences.set(sessionId, occurrence);
    for (let j = 0; j < session.length; j++, seq++) {
      const turn: unknown = session[j];
      const turnPath = `${path}[${j}]`;
      const raw = isRecord(turn)
        ? JSON.stringify({ role: turn['role'], content: turn['content'] })
        : (JSON.stringify(turn) ?? 'null');
      if (!isRecord(turn)) {
        yield failure(turnPath, raw, turnPath, `${turnPath} must be a turn object with role and content`);
        continue;
      }
      const problemField = (['role', 'content'] as const).find((field) => typeof turn[field] !== 'string');
      if (problemField !== undefined) {
        yield failure(
          turnPath,
          raw,
          `${turnPath}.${problemField}`,
          `${turnPath}.${problemField} is required (a string)`,
        );
        continue;
      }
      const result = decodeTurnInput(
        {
          kind: 'turn',
          tenantId,
          userId: questionId,
          conversationId: questionId,
          sessionId: longMemEvalSessionId(sessionId, occurrence),
          turnId: longMemEvalTurnId(sessionId, occurrence, j),
          seq,
          role: turn['role'],
          text: turn['content'],
          occurredAt: start + j * 1000,
        },
        {},
      );
      yield {
        line: null,
        label: turnPath,
        raw: truncateUtf8(raw),
        result: errorFromSource(result, {
          userId: `${at}.question_id`,
          conversationId: `${at}.question_id`,
          sessionId: `${at}.haystack_session_ids[${i}]`,
          turnId: `${at}.haystack_session_ids[${i}]`,
          role: `${turnPath}.role`,
          text: `${turnPath}.content`,
        }),
      };
    }
  }
}

/** Conversation events of every question of a LongMemEval file, streamed. */
export async function* loadLongMemEval(
  path: string,
  defaults: { tenantId?: string | undefined },
): AsyncGenerator<InputItem> {
  const tenantId = defaults.tenantId ?? 'default';
  yield* jsonArrayDatasetItems(
    path,
    (value, index, text) => longMemEvalQuestionItems(value, index, tenantId, text),
    withoutGoldLabels,
  );
}
