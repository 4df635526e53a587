import type { MemoryEntry } from '../core/model/generated.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { MemoryStore, MemoryWrite } from '../core/ports/memory-store.js';
import { embeddingText } from '../core/text/embedding-text.js';
import { storedOrEmbedded } from './stored-vectors.js';

export interface CarryOverInput {
  /** The store serving each tenant's reads now (what is carried from). */
  readonly from: (tenantId: string) => Promise<MemoryStore>;
  readonly to: MemoryStore;
  readonly tenants: readonly string[];
  /** Which memories are carried (those the new version does not derive again). */
  readonly keep: (memory: MemoryEntry) => boolean;
  /** The new version's embedder: vectors are copied when the stores share a model, else recomputed (from the text the indexer embeds). */
  readonly embedder: Embedder | null;
  readonly pageSize?: number;
  readonly signal?: AbortSignal;
}

/**
 * Copies memories, every version of them (superseded ones too, so history and `asOf` reads still
 * answer), with their ids, from the stores serving reads into a new version's store. Idempotent (the
 * store upserts by id): a copy interrupted by a crash is simply run again. Returns how many were copied.
 */
export async function carryOverMemories(input: CarryOverInput): Promise<number> {
  const pageSize = input.pageSize ?? 500;
  let copied = 0;
  for (const tenantId of input.tenants) {
    const from = await input.from(tenantId);
    if (from === input.to) continue;
    const sameModel =
      input.embedder !== null && (await from.stats({ tenantId })).embedderId === input.embedder.id;
    let cursor: string | undefined;
    do {
      input.signal?.throwIfAborted();
      const page = await from.list({ scope: { tenantId }, limit: pageSize, cursor, includeSuperseded: true });
      const kept = page.items.filter(input.keep);
      if (kept.length > 0) {
        await input.to.upsert(await withVectors(kept, from, sameModel, input.embedder));
        copied += kept.length;
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
  }
  return copied;
}

async function withVectors(
  entries: readonly MemoryEntry[],
  from: MemoryStore,
  sameModel: boolean,
  embedder: Embedder | null,
): Promise<MemoryWrite[]> {
  if (embedder === null) return entries.map((entry) => ({ entry }));
  if (sameModel) {
    const vectors = await storedOrEmbedded(from, entries, embedder);
    return entries.map((entry) => ({ entry, embedding: vectors.get(entry.id) }));
  }
  const vectors = await embedder.embed(entries.map(embeddingText));
  return entries.map((entry, i) => ({ entry, embedding: vectors[i] }));
}
