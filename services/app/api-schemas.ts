import { z } from 'zod';
import { MemoryKindValues, MemoryOpKindValues } from '../core/model/generated.js';
import { idPattern } from '../core/model/scope.js';
import { parseOccurredAt } from '../ingest/turn-input.js';
import { maxSearchLimit } from './memory-search.js';

/**
 * The requests and answers of the memory service, as zod schemas: the HTTP API decodes with them and
 * publishes them as its OpenAPI document, and every other front end (CLI, MCP) decodes with the same ones.
 */

/**
 * An id: 1–200 letters, digits or `_ . : @ - / #`. The published pattern is the one that validates, in the
 * ECMA-262 dialect JSON Schema uses (`\p{L}`: any letter).
 */
export const Id = z
  .string()
  .min(1)
  .max(200)
  .regex(idPattern, { message: 'must be 1–200 characters of letters, digits or _ . : @ - / #' })
  .meta({ description: '1–200 characters of letters, digits or _ . : @ - / #' });

/**
 * Epoch milliseconds as a string: at most ±8.64e15 (what a Date holds), digit by digit so that a regular
 * expression can say it.
 */
const epochDigits = '-?(?:\\d{1,15}|[0-7]\\d{15}|8[0-5]\\d{14}|86[0-3]\\d{13}|8640{13})';
/** A real Gregorian calendar date, YYYY-MM-DD (29 February in leap years only). */
const calendarDate =
  '(?:\\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)' +
  '|(?:\\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)';
/** An optional time of day, then an optional zone (`Z`, ±HH, ±HHMM, ±HH:MM up to 18:59). */
const timeOfDay =
  '(?:[T ](?:[01]\\d|2[0-3]):[0-5]\\d(?::[0-5]\\d(?:[.,]\\d{1,9})?)?(?:[Zz]|[+-](?:0\\d|1[0-8])(?::?[0-5]\\d)?)?)?';
/**
 * Exactly the strings an instant accepts (parseOccurredAt takes the same forms), so the published schema
 * says which dates exist rather than answering 400 for a date it calls valid.
 */
const instantString = new RegExp(`^(?:${epochDigits}|${calendarDate}${timeOfDay})$`);
const epochString = new RegExp(`^${epochDigits}$`);
/** The shape of a date-time, days unchecked: tells a date that does not exist from a malformed string. */
const isoShape =
  /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$/;
const maxEpochMs = 8_640_000_000_000_000;

/** An instant: an ISO-8601 date-time (a real calendar date; no zone means UTC) or epoch milliseconds. */
export const Instant = z
  .union([
    z.number().int().min(-maxEpochMs).max(maxEpochMs),
    z
      .string()
      .max(64)
      .regex(instantString, {
        error: (issue) =>
          `not an ISO-8601 date-time or epoch milliseconds: ${JSON.stringify(issue.input)}${typeof issue.input === 'string' && isoShape.test(issue.input) ? ' (no such date or time)' : ''}`,
      }),
  ])
  .transform((value, ctx) => {
    try {
      return parseOccurredAt(typeof value === 'string' && epochString.test(value) ? Number(value) : value, '')
        .occurredAt;
    } catch (error) {
      ctx.issues.push({
        code: 'custom',
        input: value,
        message: `not an ISO-8601 date-time or epoch milliseconds: ${JSON.stringify(value)}${error instanceof Error && /no such date/.test(error.message) ? ' (no such date or time)' : ''}`,
      });
      return z.NEVER;
    }
  })
  .meta({ description: 'ISO-8601 date-time (e.g. 2024-05-08T13:56:00+02:00) or epoch milliseconds' });

/** `?flag=true|false` */
const QueryFlag = z
  .enum(['true', 'false'])
  .transform((value) => value === 'true')
  .optional();

export const maxEventsPerRequest = 10_000;

export const EventsRequest = z.object({
  events: z
    .array(
      z.record(z.string(), z.unknown()).meta({
        description:
          'A conversation event: userId, conversationId, turnId (or seq), role, text, occurredAt; optional sessionId, agentId, speaker, kind, metadata. Items that are not valid are reported in `rejected` (and dead-lettered); the others are accepted.',
      }),
    )
    .min(1)
    .max(maxEventsPerRequest),
  /** Close the sessions of these events after appending them (end of a call or chat). */
  endSession: z.boolean().default(false),
});
export type EventsRequest = z.output<typeof EventsRequest>;

export const EventsQuery = z.object({
  /** Answer once the turns are searchable (or 30 s have passed): `processed` and `buffered` say which. */
  wait: QueryFlag,
});

/** A character that is a space neither to JavaScript (`\s`, `trim`) nor to Python (`\s`). */
const notOnlySpaces =
  /[^\t\n\v\f\r \u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/;

export const SearchRequest = z.object({
  /** The key's own tenant, if given at all: any other is refused (403). */
  tenantId: Id.optional(),
  userId: Id,
  agentId: Id.optional(),
  conversationId: Id.optional(),
  sessionId: Id.optional(),
  // Not only spaces (the search refuses a blank query). The class spells out every character that
  // JavaScript's or Python's \s takes for a space, so that the published pattern means the same to both.
  query: z
    .string()
    .min(1)
    .max(4096)
    .regex(notOnlySpaces, { message: 'must contain something other than spaces' }),
  limit: z.number().int().min(1).max(maxSearchLimit).default(10),
  /** Memories that happened at or after this instant. */
  from: Instant.optional(),
  /** Memories that happened before this instant. */
  to: Instant.optional(),
  /** Also superseded versions. */
  includeSuperseded: z.boolean().default(false),
  /** The versions that were valid at this instant. */
  asOf: Instant.optional(),
});
export type SearchRequest = z.output<typeof SearchRequest>;

export const UserPath = z.object({ userId: Id });
export const MemoryPath = z.object({ id: Id });
export const UserMemoryPath = z.object({ userId: Id, id: Id });

/** `?userId=` is required: a memory is read within its user's scope. */
export const MemoryQuery = z.object({ userId: Id, tenantId: Id.optional() });

export const ListQuery = z.object({
  limit: z
    .string()
    // 1–200 (maxSearchLimit) in at most three digits, spelled out so that the published pattern is exact.
    .regex(/^(?:0{0,2}[1-9]|0?[1-9]\d|1\d\d|200)$/, {
      message: `must be a number from 1 to ${maxSearchLimit}`,
    })
    .transform(Number)
    .pipe(z.number().int().min(1).max(maxSearchLimit))
    .optional()
    .meta({ description: `1–${maxSearchLimit}` }),
  /** From the previous page's `nextCursor` (base64url). */
  cursor: z
    .string()
    .min(1)
    .max(512)
    .regex(/^[A-Za-z0-9_-]+$/, { message: "not a cursor: pass the previous page's nextCursor" })
    .optional(),
  includeSuperseded: QueryFlag,
});

export const UsageQuery = z.object({ since: Instant.optional() });

// ---------------------------------------------------------------------------------------------------
// Answers

const NullableId = z.string().nullable();

export const MemoryViewSchema = z.object({
  id: z.string(),
  text: z.string(),
  kind: z.enum(MemoryKindValues),
  speaker: z.string(),
  occurredAt: z.string(),
  tenantId: z.string(),
  userId: z.string(),
  agentId: NullableId,
  conversationId: z.string(),
  sessionId: z.string(),
  topicId: z.string(),
  /** The turns this memory was made from. */
  sourceTurnIds: z.array(z.string()),
  validFrom: z.string(),
  validTo: z.string().nullable(),
  supersededBy: NullableId,
});

export const SearchResultSchema = MemoryViewSchema.extend({
  score: z.number(),
  lexical: z.number().nullable(),
  semantic: z.number().nullable(),
  cues: z.array(z.string()),
});

export const SearchResponse = z.object({ results: z.array(SearchResultSchema) });

export const IngestResponse = z.object({
  accepted: z.number().int(),
  duplicates: z.number().int(),
  rejected: z.array(z.object({ index: z.number().int(), field: z.string(), message: z.string() })),
  sessionEnds: z.number().int(),
  /** With `?wait=true`: every posted turn is searchable. */
  processed: z.boolean().optional(),
  /** With `?wait=true`: turns still held in the buffer of an open session. */
  buffered: z.number().int().optional(),
});
export type IngestResponse = z.output<typeof IngestResponse>;

export const MemoryListResponse = z.object({
  items: z.array(MemoryViewSchema),
  nextCursor: z.string().nullable(),
});

const DecisionViewSchema = z.object({
  opId: z.string(),
  op: z.enum(MemoryOpKindValues),
  outcome: z.enum(['applied', 'stale']),
  decidedBy: z.string(),
  requestedBy: z.string(),
  reason: z.string(),
  targetIds: z.array(z.string()),
  sourceIds: z.array(z.string()),
  replacementIds: z.array(z.string()),
  appliedAt: z.string(),
});

export const HistoryResponse = z.object({
  id: z.string(),
  versions: z.array(
    MemoryViewSchema.extend({
      current: z.boolean(),
      madeBy: z.string().nullable(),
      closedBy: z.string().nullable(),
    }),
  ),
  decisions: z.array(DecisionViewSchema),
});

const UsageCounts = {
  calls: z.number(),
  failedCalls: z.number(),
  reusedAnswers: z.number(),
  promptTokens: z.number(),
  completionTokens: z.number(),
};

export const UsageResponse = z.object({
  tenantId: z.string(),
  since: z.number().nullable(),
  llm: z.object({
    ...UsageCounts,
    byModel: z.array(z.object({ model: z.string(), ...UsageCounts, latencyMs: z.number() })),
  }),
});
export type UsageResponse = z.output<typeof UsageResponse>;

export const HealthResponse = z.looseObject({
  status: z.enum(['ok', 'unavailable']),
  ready: z.boolean(),
});

export const ErrorResponse = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    field: z.string().nullable(),
    retryable: z.boolean(),
  }),
});

/** What an erasure removed, where and how many, and when (see user-erasure.ts). */
export const ErasureReceiptSchema = z.object({
  tenantId: z.string(),
  userId: z.string(),
  erasedAt: z.string(),
  removed: z.array(z.object({ where: z.string(), count: z.number().int() })),
  tombstone: z.boolean(),
});

/** Running sleep-time consolidation of one user now. */
export const ConsolidateRequest = z.strictObject({
  /** Decide and report, but change nothing. */
  dryRun: z.boolean().default(false),
});

/** What a consolidation did: counts by decision and each decision with its reason. */
export { ConsolidationSummarySchema } from '../core/model/consolidation-summary.js';

/** A pipeline version's name: `v` and its number. */
export const VersionName = z
  .string()
  .regex(/^v[1-9][0-9]{0,8}$/)
  .meta({ description: 'A pipeline version: v1, v2, …' });
export const VersionPath = z.object({ version: VersionName });
/** Starting a replay: the key's tenant is replayed (naming another tenant is refused). */
export const ReplayRequest = z.strictObject({
  tenantId: Id.optional(),
  since: Instant.optional().meta({
    description: 'Derive again only the sessions active since then; carry the memories of the others over',
  }),
});
export const DiffQuery = z.object({
  against: VersionName.optional().meta({
    description: 'Compare with this version (default: the one serving reads)',
  }),
});

export const ReplayStatusSchema = z.object({
  version: z.string(),
  tenants: z.array(z.string()).nullable().meta({ description: 'The tenants it derives; null: every tenant' }),
  createdAt: z.string(),
  since: z.string().nullable(),
  builtAt: z.string().nullable().meta({ description: 'When it caught up with the raw log; null: building' }),
  droppedAt: z.string().nullable(),
  serves: z.array(z.string()).meta({ description: "Tenants whose reads it serves ('*': every tenant)" }),
  copied: z.number().int(),
  rawRecords: z.number().int(),
  pending: z.number().int(),
});
export const ReplayListResponse = z.object({ versions: z.array(ReplayStatusSchema) });

const DiffSampleSchema = z.object({
  tenantId: z.string(),
  key: z.string(),
  userId: z.string(),
  before: z.string().optional(),
  after: z.string().optional(),
  sourceTurnIds: z.array(z.string()),
});
export const VersionDiffSchema = z.object({
  from: z.string(),
  to: z.string(),
  tenants: z.array(z.string()),
  before: z.number().int(),
  after: z.number().int(),
  unchanged: z.number().int(),
  changed: z.number().int(),
  added: z.number().int(),
  removed: z.number().int(),
  samples: z.object({
    changed: z.array(DiffSampleSchema),
    added: z.array(DiffSampleSchema),
    removed: z.array(DiffSampleSchema),
  }),
});
