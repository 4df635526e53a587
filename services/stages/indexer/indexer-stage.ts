import type { BatchHandler } from '../../core/ports/event-log.js';
import type { Embedder } from '../../core/ports/embedder.js';
import type { MemoryStore, MemoryWrite } from '../../core/ports/memory-store.js';
import { countsPerUser, type ConsolidationTrigger } from '../../core/ports/consolidation-trigger.js';
import type { Topics } from '../../core/model/topics.js';
import { embeddingText } from '../../core/text/embedding-text.js';

export interface IndexerStageDeps {
  readonly store: MemoryStore;
  readonly embedder: Embedder | null;
  /** Told which users got memories after each batch (distributed: wakes their consolidation workflows). */
  readonly trigger?: ConsolidationTrigger | null | undefined;
}

/**
 * Light3 soft update: embed the batch's memories in one call (speaker and text, see embeddingText) and
 * upsert them. Upserts are idempotent by the deterministic memory id, so a batch replayed after a crash
 * changes nothing. Then the consolidation trigger hears which users got memories (a replayed batch tells
 * it again: a wake-up too many costs a look at the pending set).
 */
export function indexerStage(deps: IndexerStageDeps): BatchHandler<typeof Topics.memories> {
  return async (records) => {
    const entries = records.map((record) => record.value);
    const vectors = deps.embedder === null ? [] : await deps.embedder.embed(entries.map(embeddingText));
    const writes: MemoryWrite[] = entries.map((entry, index) => ({ entry, embedding: vectors[index] }));
    // The write is a span of the batch's trace (its records carry the stage's span context).
    await deps.store.upsert(writes, { traceContext: records.find((r) => r.traceContext)?.traceContext });
    if (deps.trigger != null && entries.length > 0)
      await deps.trigger.notify(
        countsPerUser(entries.map(({ tenantId, userId }) => ({ tenantId, userId, count: 1 }))),
      );
    return { records: [], state: [] };
  };
}
