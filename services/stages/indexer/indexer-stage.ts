import type { BatchHandler } from '../../core/ports/event-log.js';
import type { Embedder } from '../../core/ports/embedder.js';
import type { MemoryStore, MemoryWrite } from '../../core/ports/memory-store.js';
import type { Topics } from '../../core/model/topics.js';
import { embeddingText } from '../../core/text/embedding-text.js';

export interface IndexerStageDeps {
  readonly store: MemoryStore;
  readonly embedder: Embedder | null;
}

/**
 * Light3 soft update: embed the batch's memories in one call (speaker and text, see embeddingText) and
 * upsert them. Upserts are idempotent by
 * the deterministic memory id, so a batch replayed after a crash changes nothing.
 */
export function indexerStage(deps: IndexerStageDeps): BatchHandler<typeof Topics.memories> {
  return async (records) => {
    const entries = records.map((record) => record.value);
    const vectors = deps.embedder === null ? [] : await deps.embedder.embed(entries.map(embeddingText));
    const writes: MemoryWrite[] = entries.map((entry, index) => ({ entry, embedding: vectors[index] }));
    await deps.store.upsert(writes);
    return { records: [], state: [] };
  };
}
