import { z } from 'zod';
import { InvalidInputError, LightmemError } from '../../core/errors.js';
import { MemoryKindValues } from '../../core/model/generated.js';
import { assertId, assertScope, type Scope } from '../../core/model/scope.js';
import type { MemoryEntry } from '../../core/model/generated.js';
import type { ListRequest, MemoryWrite, TimeRange } from '../../core/ports/memory-store.js';

/**
 * Checks of what callers hand a MemoryStore, shared by every store so each refuses the same input with
 * the same code and field. Entries usually come typed from the pipeline, but a store is a trust boundary.
 */

/** Largest `limit` of one search or list page. */
export const MAX_LIMIT = 1_000;

export function checkLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new InvalidInputError(`limit must be an integer from 1 to ${MAX_LIMIT}`, 'limit');
  }
  return limit;
}

/** A checked time range on occurredAt: from inclusive, to exclusive, both integers. */
export interface Range {
  readonly from?: number;
  readonly to?: number;
}

/**
 * Occurrence times are integers, so rounding bounds up keeps `>= from` and `< to` exact; clamping keeps
 * them storable as 64-bit integers.
 */
export function checkTimeRange(range: TimeRange | undefined): Range {
  const out: { from?: number; to?: number } = {};
  for (const side of ['from', 'to'] as const) {
    const value = range?.[side];
    if (value === undefined) continue;
    if (!Number.isFinite(value))
      throw new InvalidInputError(`timeRange.${side} must be a finite number`, `timeRange.${side}`);
    out[side] = Math.min(Math.max(Math.ceil(value), -Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  }
  return out;
}

/** An as-of time: an integer epoch ms. */
export function checkAsOf(asOf: number): number {
  if (!Number.isSafeInteger(asOf)) throw new InvalidInputError('asOf must be an integer epoch ms', 'asOf');
  return asOf;
}

/** Consolidation reads are about one user: the scope must name the tenant and the user. */
export function checkUserScope(scope: Scope): Scope & { readonly userId: string } {
  assertScope(scope);
  const { userId } = scope;
  if (userId === undefined) {
    throw new LightmemError('scope_required', 'this operation needs a userId besides the tenantId', {
      field: 'scope.userId',
    });
  }
  return { ...scope, userId };
}

export function checkVector(vector: unknown, field: string): void {
  if (!(vector instanceof Float32Array) || vector.length === 0) {
    throw new InvalidInputError(`${field} must be a non-empty Float32Array`, field);
  }
  for (const value of vector) {
    if (!Number.isFinite(value)) throw new InvalidInputError(`${field} has a non-finite value`, field);
  }
}

/** Every field a store relies on, named as `writes[i].entry.<field>` when it is wrong. */
export function validateWrite(write: MemoryWrite, index: number): void {
  const { entry, embedding } = write;
  const at = (field: string): string => `writes[${index}].entry.${field}`;
  assertId(entry.id, at('id'));
  for (const field of ['tenantId', 'userId', 'conversationId', 'sessionId'] as const) {
    assertId(entry[field], at(field));
  }
  if (entry.agentId !== null) assertId(entry.agentId, at('agentId'));
  // Typed as MemoryKind, but an untyped caller may pass anything: print it safely.
  if (!MemoryKindValues.includes(entry.kind)) {
    throw new InvalidInputError(`unknown kind ${JSON.stringify(entry.kind)}`, at('kind'));
  }
  for (const field of ['text', 'speaker', 'topicId', 'zoneOffset'] as const) {
    if (typeof entry[field] !== 'string') throw new InvalidInputError(`${field} must be a string`, at(field));
  }
  for (const field of ['occurredAt', 'ingestedAt', 'validFrom'] as const) {
    if (!Number.isSafeInteger(entry[field]))
      throw new InvalidInputError(`${field} must be an integer epoch ms`, at(field));
  }
  if (entry.validTo !== null && !Number.isSafeInteger(entry.validTo)) {
    throw new InvalidInputError('validTo must be null or an integer epoch ms', at('validTo'));
  }
  if (entry.supersededBy !== null) assertId(entry.supersededBy, at('supersededBy'));
  if (!Array.isArray(entry.sourceTurnIds) || !entry.sourceTurnIds.every((id) => typeof id === 'string')) {
    throw new InvalidInputError('sourceTurnIds must be an array of strings', at('sourceTurnIds'));
  }
  if (typeof entry.pipeline !== 'object' || entry.pipeline === null) {
    throw new InvalidInputError('pipeline is required', at('pipeline'));
  }
  if (embedding !== undefined) checkVector(embedding, `writes[${index}].embedding`);
}

/** The ids to close (distinct, never the replacement itself) after checking every argument. */
export function checkSupersede(scope: Scope, ids: readonly string[], by: string, at: number): string[] {
  assertScope(scope);
  assertId(by, 'by');
  ids.forEach((id, i) => assertId(id, `ids[${i}]`));
  if (!Number.isSafeInteger(at)) throw new InvalidInputError('at must be an integer epoch ms', 'at');
  return [...new Set(ids)].filter((id) => id !== by);
}

/**
 * Erasure needs a data subject: a userId or a conversationId (agentId / sessionId may narrow it further).
 * A bare `{ tenantId }` is refused with `scope_required` rather than wiping the tenant, because a caller
 * that forgot the userId must not erase everyone; tenant off-boarding is each store's eraseTenant().
 */
export function checkErasureScope(scope: Scope): Scope {
  assertScope(scope);
  if (scope.userId === undefined && scope.conversationId === undefined) {
    throw new LightmemError(
      'scope_required',
      'erase needs a userId or a conversationId besides the tenantId',
      {
        field: 'scope.userId',
      },
    );
  }
  return scope;
}

/** A checked list request: keyset paging in (occurredAt, id) order from after `after`. */
export interface ListPlan {
  readonly scope: Scope;
  readonly limit: number;
  /** The (occurredAt, id) key of the last item of the previous page. */
  readonly after: [number, string] | null;
  readonly live: boolean;
}

export function planList(request: ListRequest): ListPlan {
  const scope = assertScope(request.scope);
  const limit = checkLimit(request.limit);
  const after = request.cursor === undefined ? null : decodeCursor(request.cursor);
  return { scope, limit, after, live: request.includeSuperseded !== true };
}

/** A page from `limit + 1` rows in key order: the extra row only says that there is a next page. */
export function listPage<T>(
  rows: readonly T[],
  limit: number,
  toEntry: (row: T) => MemoryEntry,
): { items: MemoryEntry[]; nextCursor: string | null } {
  const items = rows.slice(0, limit).map(toEntry);
  const last = items[items.length - 1];
  const nextCursor =
    rows.length > limit && last !== undefined ? encodeCursor(last.occurredAt, last.id) : null;
  return { items, nextCursor };
}

const cursorSchema = z.tuple([z.number().int(), z.string()]);

/** A list cursor: the (occurredAt, id) key of the last item of a page. Opaque to callers. */
function encodeCursor(occurredAt: number, id: string): string {
  return Buffer.from(JSON.stringify([occurredAt, id])).toString('base64url');
}

function decodeCursor(cursor: string): [number, string] {
  try {
    return cursorSchema.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
  } catch (error) {
    throw new InvalidInputError('invalid cursor', 'cursor', error);
  }
}
