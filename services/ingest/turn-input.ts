/**
 * Decoding of one conversation event as it arrives from outside lightmem: a line of a jsonl file, one
 * item of the HTTP API's `POST /v1/events` batch, or a turn built by a dataset loader.
 *
 * The wire shape (`TurnInputJson`) is lenient where a caller can be helped (defaults for tenant, session,
 * speaker, turn id from seq, case-insensitive role) and strict where a wrong value would poison memory
 * (ids, timestamps, text size). A bad item yields exactly one `InputError`: the first problem, with a
 * dotted field path and a message that says what was expected, so it can be dead-lettered.
 */
import { z } from 'zod';
import { InvalidInputError } from '../core/errors.js';
import {
  type ConversationEvent,
  type EventKind,
  EventKindValues,
  type Role,
  RoleValues,
} from '../core/model/generated.js';
import { assertId } from '../core/model/scope.js';

/** A conversation event as decoded from input, before lightmem stamps receivedAt. */
export type TurnInput = Omit<ConversationEvent, 'receivedAt'>;

export interface InputError {
  /** Dotted path of the offending field (`metadata.channel`), or `(root)` / `(line)` for the whole item. */
  field: string;
  message: string;
}

export type DecodeResult = { ok: true; event: TurnInput } | { ok: false; error: InputError };

/** One item of an input file: its 1-based line (jsonl) or position label, and the decode result. */
export interface InputItem {
  /** 1-based line of a jsonl file; null for items of a JSON dataset. */
  line: number | null;
  /** Where the item is: `line 12`, or a JSON path such as `[0].conversation.session_1[2]`. */
  label: string;
  /** The original text of the item, truncated to 64 KiB (for dead letters). */
  raw: string;
  result: DecodeResult;
}

export interface TurnInputDefaults {
  /** Tenant used when the item has none (a CLI option or the API key's tenant). */
  tenantId?: string | undefined;
  /**
   * Position of the item in its conversation, used as `seq` when the item gives a `turnId` but no `seq`
   * (and for control events, which may omit both). Never used to invent a `turnId` for a turn: an id
   * derived from a file position would change when lines are added, breaking idempotent re-ingest.
   */
  seq?: number | undefined;
}

export const MAX_TEXT_BYTES = 1024 * 1024;
export const MAX_RAW_BYTES = 64 * 1024;
export const MAX_SPEAKER_CHARS = 200;

// ---------------------------------------------------------------------------------------------------
// Event time

const isoPattern =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/** Largest |epoch ms| a JavaScript Date can hold. */
const MAX_EPOCH_MS = 8.64e15;

function quote(value: string | number): string {
  const text = typeof value === 'string' ? value : String(value);
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
}

/** Epoch ms of a UTC calendar date-time, or NaN when a field is out of range (e.g. 31 April). */
export function utcEpochMs(
  year: number,
  month: number,
  day: number,
  hour = 0,
  minute = 0,
  second = 0,
  ms = 0,
): number {
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return Number.NaN;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // setUTCFullYear, unlike Date.UTC, keeps years 0–99 as given
  date.setUTCHours(hour, minute, second, ms);
  if (date.getUTCDate() !== day || date.getUTCMonth() !== month - 1) return Number.NaN;
  return date.getTime();
}

function formatOffset(sign: number, hours: number, minutes: number): string {
  const s = sign < 0 && hours + minutes > 0 ? '-' : '+';
  return `${s}${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}`;
}

/**
 * Parses an event time: an ISO-8601 date or date-time (zone `Z`, `±HH:MM`, `±HHMM`, `±HH`, or none = UTC)
 * or epoch milliseconds. Returns the instant and the zone offset as written (`Z` → `+00:00`).
 */
export function parseOccurredAt(
  value: string | number,
  field = 'occurredAt',
): { occurredAt: number; zoneOffset: string } {
  const expected = `${field} must be an ISO-8601 date-time (e.g. 2024-05-08T13:56:00+02:00; no zone means UTC) or epoch milliseconds`;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || Math.abs(value) > MAX_EPOCH_MS) {
      throw new InvalidInputError(
        `${expected}; got ${quote(value)} (not a whole number of milliseconds in range)`,
        field,
      );
    }
    return { occurredAt: value, zoneOffset: '+00:00' };
  }
  const m = isoPattern.exec(value.trim());
  if (!m) throw new InvalidInputError(`${expected}; got ${quote(value)}`, field);
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const ms = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
  const local = utcEpochMs(
    Number(y),
    Number(mo),
    Number(d),
    Number(h ?? 0),
    Number(mi ?? 0),
    Number(s ?? 0),
    ms,
  );
  let offsetMinutes = 0;
  let zoneOffset = '+00:00';
  if (zone !== undefined && zone !== 'Z' && zone !== 'z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 18 || om > 59)
      throw new InvalidInputError(`${expected}; got ${quote(value)} (zone offset out of range)`, field);
    offsetMinutes = sign * (oh * 60 + om);
    zoneOffset = formatOffset(sign, oh, om);
  }
  if (Number.isNaN(local))
    throw new InvalidInputError(`${expected}; got ${quote(value)} (no such date or time)`, field);
  return { occurredAt: local - offsetMinutes * 60_000, zoneOffset };
}

// ---------------------------------------------------------------------------------------------------
// Wire schema

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `string ${quote(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return `${typeof value} ${value}`;
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** Error function for a zod schema: "<field> is required (<what>)" or "<field> must be <what> (got …)". */
function expecting(field: string, what: string) {
  return (issue: { input?: unknown }): string =>
    issue.input === undefined
      ? `${field} is required (${what})`
      : `${field} must be ${what} (got ${typeName(issue.input)})`;
}

function idField(field: string) {
  return z.string({ error: expecting(field, 'a string id') }).transform((value, ctx) => {
    try {
      return assertId(value, field);
    } catch (error) {
      if (!(error instanceof InvalidInputError)) throw error;
      ctx.issues.push({ code: 'custom', message: error.message, input: value });
      return z.NEVER;
    }
  });
}

const roleList = RoleValues.join(', ');
const isRole = (value: string): value is Role => (RoleValues as readonly string[]).includes(value);

const roleField = z
  .string({ error: expecting('role', `one of ${roleList}`) })
  .transform((value, ctx): Role => {
    const role = value.trim().toLowerCase();
    if (isRole(role)) return role;
    ctx.issues.push({
      code: 'custom',
      message: `role must be one of ${roleList} (case-insensitive); got ${quote(value)}`,
      input: value,
    });
    return z.NEVER;
  });

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${(bytes / (1024 * 1024)).toFixed(2)} MiB`
    : `${(bytes / 1024).toFixed(1)} KiB`;
}

const textField = z.string({ error: expecting('text', 'a string') }).superRefine((value, ctx) => {
  // A UTF-8 character is at most 3 bytes per UTF-16 unit, so short strings skip the byte count.
  if (value.length * 3 <= MAX_TEXT_BYTES) return;
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_TEXT_BYTES) {
    ctx.addIssue({
      code: 'custom',
      message: `text must be at most 1 MiB (${MAX_TEXT_BYTES} bytes) of UTF-8; got ${formatBytes(bytes)} (${bytes} bytes)`,
      input: `${value.slice(0, 60)}…`,
    });
  }
});

const occurredAtField = z
  .union([z.string(), z.number()], {
    error: expecting('occurredAt', 'an ISO-8601 date-time string or epoch milliseconds'),
  })
  .transform((value, ctx) => {
    try {
      return parseOccurredAt(value);
    } catch (error) {
      if (!(error instanceof InvalidInputError)) throw error;
      ctx.issues.push({ code: 'custom', message: error.message, input: value });
      return z.NEVER;
    }
  });

const seqError = expecting('seq', 'a non-negative integer');

/**
 * The structure of one incoming event. Optional fields may also be `null`. Unknown fields are ignored.
 * Defaults that depend on other fields or on the caller are filled in by `decodeTurnInput` first.
 * Fields are listed in the order problems are reported.
 */
export const TurnInputJson = z.object({
  kind: z
    .enum(EventKindValues, { error: expecting('kind', `one of ${EventKindValues.join(', ')}`) })
    .nullish(),
  tenantId: idField('tenantId'),
  userId: idField('userId'),
  agentId: idField('agentId').nullish(),
  conversationId: idField('conversationId'),
  sessionId: idField('sessionId'),
  seq: z.number({ error: seqError }).int({ error: seqError }).min(0, { error: seqError }),
  turnId: idField('turnId'),
  role: roleField,
  speaker: z
    .string({ error: expecting('speaker', 'a string') })
    .max(MAX_SPEAKER_CHARS, { error: `speaker must be at most ${MAX_SPEAKER_CHARS} characters` })
    .nullish(),
  text: textField,
  occurredAt: occurredAtField,
  metadata: z
    .record(
      z.string(),
      z.string({ error: (issue) => `metadata values must be strings (got ${typeName(issue.input)})` }), // see firstProblem
      { error: expecting('metadata', 'an object mapping strings to strings') },
    )
    .nullish(),
});
export type TurnInputJson = z.input<typeof TurnInputJson>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isControlKind = (kind: unknown): boolean => kind === 'session_end' || kind === 'flush';

/**
 * Fills the defaults that depend on the caller or on other fields, before the schema sees the item:
 * tenant, seq (see `TurnInputDefaults.seq`), turnId `t<seq>`, sessionId = conversationId, and for
 * control events role `system` and empty text.
 */
function withDefaults(item: Record<string, unknown>, defaults: TurnInputDefaults): Record<string, unknown> {
  const input = { ...item };
  const missing = (key: string) => input[key] === undefined || input[key] === null;
  const control = isControlKind(input['kind']);
  if (missing('tenantId') && defaults.tenantId !== undefined) input['tenantId'] = defaults.tenantId;
  if (missing('sessionId') && typeof input['conversationId'] === 'string')
    input['sessionId'] = input['conversationId'];
  if (missing('seq') && defaults.seq !== undefined && (!missing('turnId') || control))
    input['seq'] = defaults.seq;
  const seq = input['seq'];
  if (missing('turnId') && typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 0)
    input['turnId'] = `t${seq}`;
  if (control && missing('role')) input['role'] = 'system';
  if (control && missing('text')) input['text'] = '';
  return input;
}

/** The first issue as an InputError; a missing field whose fix is a default gets a message saying so. */
function firstProblem(issues: readonly z.core.$ZodIssue[], input: Record<string, unknown>): InputError {
  const issue = issues[0];
  if (issue === undefined) return { field: '(root)', message: 'invalid event' };
  const top = String(issue.path[0] ?? '');
  if (issue.code === 'invalid_type' && issue.path.length === 1 && input[top] == null) {
    if (top === 'tenantId') {
      return {
        field: top,
        message: 'tenantId is required: give it in the item or configure a default tenant',
      };
    }
    // seq and turnId both missing (seq is checked first): ask for the id, the stable choice.
    if ((top === 'seq' || top === 'turnId') && input['turnId'] == null) {
      return {
        field: 'turnId',
        message:
          'turnId is required (a string id), or give seq (a non-negative integer) to derive turnId t<seq>',
      };
    }
  }
  const field = issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
  const metadata = input['metadata'];
  if (top === 'metadata' && issue.path.length === 2 && isPlainObject(metadata)) {
    const value = metadata[String(issue.path[1])];
    return {
      field,
      message: `${field} must be a string: metadata maps strings to strings (got ${typeName(value)})`,
    };
  }
  return { field, message: issue.message };
}

/** Decodes one incoming event. Never throws for bad input: returns the first problem instead. */
export function decodeTurnInput(raw: unknown, defaults: TurnInputDefaults = {}): DecodeResult {
  if (!isPlainObject(raw)) {
    return {
      ok: false,
      error: {
        field: '(root)',
        message: `expected a JSON object describing one event (got ${typeName(raw)})`,
      },
    };
  }
  const input = withDefaults(raw, defaults);
  const parsed = TurnInputJson.safeParse(input);
  if (!parsed.success) {
    return { ok: false, error: firstProblem(parsed.error.issues, input) };
  }
  const data = parsed.data;
  const kind: EventKind = data.kind ?? 'turn';
  if (kind === 'turn' && data.text.trim() === '') {
    return {
      ok: false,
      error: { field: 'text', message: "text must be a non-empty string for kind 'turn'" },
    };
  }
  const speaker = data.speaker == null || data.speaker.trim() === '' ? data.role : data.speaker;
  return {
    ok: true,
    event: {
      kind,
      tenantId: data.tenantId,
      userId: data.userId,
      agentId: data.agentId ?? null,
      conversationId: data.conversationId,
      sessionId: data.sessionId,
      turnId: data.turnId,
      seq: data.seq,
      role: data.role,
      speaker,
      text: data.text,
      occurredAt: data.occurredAt.occurredAt,
      zoneOffset: data.occurredAt.zoneOffset,
      metadata: data.metadata ?? {},
    },
  };
}

/** Cuts text to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes = MAX_RAW_BYTES): string {
  if (text.length * 3 <= maxBytes) return text;
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--; // back off to a character start
  return bytes.subarray(0, end).toString('utf8');
}

// ---------------------------------------------------------------------------------------------------
// For dataset loaders

/** An item of a JSON dataset that cannot become an event (bad structure), to dead-letter. */
export function datasetFailure(label: string, raw: string, field: string, message: string): InputItem {
  return { line: null, label, raw: truncateUtf8(raw), result: { ok: false, error: { field, message } } };
}

/**
 * Points an event-field error back at the dataset field it was built from (`turnId` → `[0].….dia_id`),
 * so the message names what to fix in the file.
 */
export function errorFromSource(
  result: DecodeResult,
  sources: Readonly<Record<string, string>>,
): DecodeResult {
  if (result.ok) return result;
  const source = sources[result.error.field];
  if (source === undefined) return result;
  return {
    ok: false,
    error: { field: source, message: `${source} (as ${result.error.field}): ${result.error.message}` },
  };
}
