import type { MemoryEntry } from '../model/generated.js';
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

export interface MemoryStore {
  /** Idempotent by id: writing the same entry again changes nothing. */
  upsert(writes: readonly MemoryWrite[]): Promise<UpsertResult>;
  search(request: SearchRequest): Promise<SearchHit[]>;
  get(scope: Scope, id: string): Promise<MemoryEntry | undefined>;
  list(request: ListRequest): Promise<{ items: MemoryEntry[]; nextCursor: string | null }>;
  /** Closes the validity of `ids` at `at` and points them to `by`; history is kept. Returns how many changed. */
  supersede(scope: Scope, ids: readonly string[], by: string, at: number): Promise<number>;
  /** Deletes every memory in the scope (erasure). Returns the ids erased. */
  erase(scope: Scope): Promise<string[]>;
  stats(scope?: Scope): Promise<StoreStats>;
  close(): Promise<void>;
}
