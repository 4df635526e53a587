import type { MemoryEntry, MemoryOp } from '../model/generated.js';
import type { Scope } from '../model/scope.js';

export interface MemoryWrite {
  readonly entry: MemoryEntry;
  /** Embedding of entry.text by the store's embedder (absent when no embedder is installed). */
  readonly embedding?: Float32Array | undefined;
}

export interface TimeRange {
  /** Inclusive, epoch ms. */
  readonly from?: number | undefined;
  /** Exclusive, epoch ms. */
  readonly to?: number | undefined;
}

export interface SearchRequest {
  readonly scope: Scope;
  readonly text: string;
  /** Query embedding; must come from the same embedder as the stored vectors. */
  readonly vector?: Float32Array | undefined;
  readonly embedderId?: string | undefined;
  readonly limit: number;
  readonly timeRange?: TimeRange | undefined;
  /** Also return memories that were superseded (history). Default: live memories only. */
  readonly includeSuperseded?: boolean | undefined;
  /**
   * The versions that were valid at this event time (epoch ms): validFrom <= asOf and validTo absent or
   * later, whether or not they were superseded since. Wins over includeSuperseded.
   */
  readonly asOf?: number | undefined;
}

export interface SearchHit {
  readonly memory: MemoryEntry;
  /** Fused score in [0, 1], higher is better. */
  readonly score: number;
  /** The parts of the fused score. */
  readonly lexical: number | null;
  readonly semantic: number | null;
}

export interface ListRequest {
  readonly scope: Scope;
  readonly limit: number;
  /** Opaque cursor from a previous page. */
  readonly cursor?: string | undefined;
  readonly includeSuperseded?: boolean | undefined;
}

export interface UpsertResult {
  readonly inserted: number;
  readonly updated: number;
  readonly unchanged: number;
}

export interface StoreStats {
  readonly live: number;
  readonly superseded: number;
  readonly embedderId: string | null;
}

/** One `nearest` query: a user's live memories closest to a vector, at or before an event time. */
export interface NearestRequest {
  /** Must name a tenant and a user. */
  readonly scope: Scope;
  readonly vector: Float32Array;
  readonly embedderId: string;
  readonly k: number;
  /** Only memories with occurredAt <= this (inclusive). */
  readonly occurredAtMost?: number | undefined;
}

export interface Neighbour {
  readonly memory: MemoryEntry;
  /** Cosine similarity of the stored vector and the query, in [-1, 1]. */
  readonly similarity: number;
}

/** An op to apply, with the embeddings of its replacements (same order as op.replacements). */
export interface OpWrite {
  readonly op: MemoryOp;
  readonly embeddings?: readonly (Float32Array | undefined)[] | undefined;
}

/**
 * What became of an op: `applied` (the store changed, or an ignore was recorded), `stale` (a target was no
 * longer current or not in the op's scope: recorded, nothing changed), `duplicate` (this opId was applied
 * before: nothing happens again).
 */
export type OpOutcome = 'applied' | 'stale' | 'duplicate';

export interface ApplyResult {
  readonly applied: number;
  readonly stale: number;
  readonly duplicate: number;
}

/** An op as the store recorded it. */
export interface RecordedOp {
  readonly op: MemoryOp;
  readonly outcome: Exclude<OpOutcome, 'duplicate'>;
  readonly appliedAt: number;
}

/** Every version linked to a memory by ops (what it replaced, what replaced it), oldest first. */
export interface MemoryHistory {
  readonly versions: MemoryEntry[];
  /** The ops that made or closed these versions, in the order they were applied. */
  readonly ops: RecordedOp[];
}

/** A user with memories no consolidation has taken as sources yet. */
export interface PendingUser {
  readonly tenantId: string;
  readonly userId: string;
  readonly pending: number;
}

/** What a write is part of. */
export interface WriteOptions {
  /** The trace of the work that writes (a W3C traceparent): the write is a span of it. */
  readonly traceContext?: string | undefined;
}

export interface MemoryStore {
  /** Idempotent by id: writing the same entry again changes nothing. */
  upsert(writes: readonly MemoryWrite[], options?: WriteOptions): Promise<UpsertResult>;
  search(request: SearchRequest): Promise<SearchHit[]>;
  get(scope: Scope, id: string): Promise<MemoryEntry | undefined>;
  list(request: ListRequest): Promise<{ items: MemoryEntry[]; nextCursor: string | null }>;
  /** Closes the validity of `ids` at `at` and points them to `by`; history is kept. Returns how many changed. */
  supersede(scope: Scope, ids: readonly string[], by: string, at: number): Promise<number>;
  /**
   * Applies decisions, each atomically and idempotently by opId: update writes the replacements and closes
   * the targets (validTo = op.validTo, supersededBy = the first replacement); supersede closes the targets
   * and points them to op.replacementIds[0]; ignore only records the decision. An op whose targets are not
   * all current versions in its (tenant, user) is recorded as stale and changes nothing.
   */
  applyOps(ops: readonly OpWrite[]): Promise<ApplyResult>;
  /** Which of these op ids were recorded (applied or stale), within the tenant. */
  recordedOps(tenantId: string, opIds: readonly string[]): Promise<Set<string>>;
  /** The versions linked to `id` by ops, with those ops; undefined when the memory is not in the scope. */
  history(scope: Scope, id: string): Promise<MemoryHistory | undefined>;
  /** For each request, the nearest live memories of the user, best first (batched: one round trip). */
  nearest(requests: readonly NearestRequest[]): Promise<Neighbour[][]>;
  /** The stored vectors of these memories (those that have one). */
  embeddings(scope: Scope, ids: readonly string[]): Promise<Map<string, Float32Array>>;
  /**
   * Current memories of one user (scope with tenantId and userId) that no consolidation has taken as
   * sources yet, in (occurredAt, id) order, at most `limit`. New versions written by applyOps are not
   * pending (they come from consolidation).
   */
  pendingConsolidation(scope: Scope, limit: number): Promise<MemoryEntry[]>;
  /** Marks memories as taken by a consolidation (they stop being pending). Returns how many changed. */
  markConsolidated(scope: Scope, ids: readonly string[], at: number): Promise<number>;
  /** Users with pending memories (an operator's view: every tenant when none is given). */
  pendingUsers(tenantId?: string): Promise<PendingUser[]>;
  /** Deletes every memory in the scope (erasure). Returns the ids erased. */
  erase(scope: Scope): Promise<string[]>;
  stats(scope?: Scope): Promise<StoreStats>;
  close(): Promise<void>;
}
