/**
 * LoCoMo loader: turns each sample's conversation into conversation events, the way LightMem feeds it
 * (reference §3.2): one user per sample, every utterance as role `user` with the real speaker name (both
 * speakers are users of the memory), image captions appended to the text.
 *
 * Only `conversation.session_N` turns are read. `observation`, `session_summary`, `event_summary` and
 * `qa` are generated text or gold answers and are never fed to the memory system.
 */
import { InvalidInputError, errorMessage } from '../core/errors.js';
import { jsonArrayDatasetItems } from './jsonl.js';
import {
  type InputItem,
  datasetFailure as failure,
  decodeTurnInput,
  errorFromSource,
  truncateUtf8,
  utcEpochMs,
} from './turn-input.js';
import { monthNumber } from '../core/text/month-names.js';

const locomoDatePattern =
  /^(\d{1,2}):(\d{2})\s*([ap])\.?m\.?\s+on\s+(\d{1,2})\s+([A-Za-z]+)\.?,?\s+(\d{4})$/i;

/** Parses a LoCoMo session time such as `1:56 pm on 8 May, 2023` as UTC; returns epoch ms. */
export function parseLocomoDateTime(value: string): number {
  const m = locomoDatePattern.exec(value.trim());
  const month = m ? monthNumber(m[5] ?? '') : undefined;
  if (m && month !== undefined) {
    const hour12 = Number(m[1]);
    const pm = (m[3] ?? '').toLowerCase() === 'p';
    if (hour12 >= 1 && hour12 <= 12) {
      const hour = (hour12 % 12) + (pm ? 12 : 0); // 12:09 am is 00:09, 12:30 pm is 12:30
      const ms = utcEpochMs(Number(m[6]), month, Number(m[4]), hour, Number(m[2]));
      if (!Number.isNaN(ms)) return ms;
    }
  }
  throw new InvalidInputError(
    `expected a LoCoMo date-time like "1:56 pm on 8 May, 2023"; got ${JSON.stringify(value.slice(0, 60))}`,
    'session_date_time',
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const sessionKey = /^session_(\d+)$/;

/** Conversation events of one LoCoMo sample (element `index` of the file). */
export function* locomoSampleItems(
  sample: unknown,
  index: number,
  tenantId: string,
  text: string,
): Generator<InputItem> {
  const at = `[${index}]`;
  if (!isRecord(sample)) {
    yield failure(at, text, at, `${at} must be a LoCoMo sample object with sample_id and conversation`);
    return;
  }
  const sampleId = sample['sample_id'];
  if (typeof sampleId !== 'string') {
    yield failure(at, text, `${at}.sample_id`, `${at}.sample_id is required (a string)`);
    return;
  }
  const conversation = sample['conversation'];
  if (!isRecord(conversation)) {
    yield failure(
      at,
      text,
      `${at}.conversation`,
      `${at}.conversation is required (an object with session_N arrays) in sample ${sampleId}`,
    );
    return;
  }
  const sessions = Object.keys(conversation)
    .map((key) => ({ key, number: Number(sessionKey.exec(key)?.[1] ?? Number.NaN) }))
    .filter((session) => !Number.isNaN(session.number))
    .sort((a, b) => a.number - b.number);
  let seq = 0;
  for (const { key } of sessions) {
    const path = `${at}.conversation.${key}`;
    const turns = conversation[key];
    const dateKey = `${key}_date_time`;
    const dateValue = conversation[dateKey];
    if (!Array.isArray(turns)) {
      yield failure(path, JSON.stringify(turns ?? null), path, `${path} must be an array of turns`);
      continue;
    }
    let sessionStart: number | undefined;
    let problem = 'is required (a string like "1:56 pm on 8 May, 2023")';
    if (typeof dateValue === 'string') {
      try {
        sessionStart = parseLocomoDateTime(dateValue);
      } catch (error) {
        problem = errorMessage(error);
      }
    }
    if (sessionStart === undefined) {
      const field = `${at}.conversation.${dateKey}`;
      const raw = JSON.stringify({ [dateKey]: dateValue ?? null, [key]: turns });
      yield failure(
        path,
        raw,
        field,
        `${field}: ${problem}; the ${turns.length} turns of ${key} were skipped`,
      );
      seq += turns.length; // keep later seqs where they would be
      continue;
    }
    for (let j = 0; j < turns.length; j++, seq++) {
      const turn: unknown = turns[j];
      const turnPath = `${path}[${j}]`;
      const raw = JSON.stringify(turn) ?? 'null';
      if (!isRecord(turn)) {
        yield failure(
          turnPath,
          raw,
          turnPath,
          `${turnPath} must be a turn object with speaker, dia_id and text`,
        );
        continue;
      }
      const problem = (['speaker', 'dia_id', 'text'] as const).find(
        (field) => typeof turn[field] !== 'string',
      );
      if (problem !== undefined) {
        yield failure(
          turnPath,
          raw,
          `${turnPath}.${problem}`,
          `${turnPath}.${problem} is required (a string)`,
        );
        continue;
      }
      const caption = turn['blip_caption'];
      const captionText =
        typeof caption === 'string' && caption.trim() !== '' ? ` [shares an image: ${caption.trim()}]` : '';
      const result = decodeTurnInput(
        {
          kind: 'turn',
          tenantId,
          userId: sampleId,
          conversationId: sampleId,
          sessionId: key,
          turnId: turn['dia_id'],
          seq,
          role: 'user',
          speaker: turn['speaker'],
          text: `${String(turn['text'])}${captionText}`,
          occurredAt: sessionStart + j * 1000, // unique, increasing times within the session
        },
        {},
      );
      yield {
        line: null,
        label: turnPath,
        raw: truncateUtf8(raw),
        result: errorFromSource(result, {
          userId: `${at}.sample_id`,
          conversationId: `${at}.sample_id`,
          turnId: `${turnPath}.dia_id`,
          speaker: `${turnPath}.speaker`,
          text: `${turnPath}.text`,
        }),
      };
    }
  }
}

/** Conversation events of every sample of a LoCoMo file (`locomo10.json` schema), streamed. */
export async function* loadLocomo(
  path: string,
  defaults: { tenantId?: string | undefined },
): AsyncGenerator<InputItem> {
  const tenantId = defaults.tenantId ?? 'default';
  yield* jsonArrayDatasetItems(path, (value, index, text) => locomoSampleItems(value, index, tenantId, text));
}
