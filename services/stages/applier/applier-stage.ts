import type { BatchHandler } from '../../core/ports/event-log.js';
import type { Embedder } from '../../core/ports/embedder.js';
import type { MemoryStore, OpWrite } from '../../core/ports/memory-store.js';
import type { Topics } from '../../core/model/topics.js';
import { embeddingText } from '../../core/text/embedding-text.js';

export interface ApplierStageDeps {
  readonly store: MemoryStore;
  readonly embedder: Embedder | null;
}

/**
 * Applies the decisions of `lightmem.memory-ops` to the store: the new versions of a batch are embedded in
 * one call (as the indexer embeds memories), then every op is applied atomically and once per op id, so a
 * batch redone after a crash, or an op appended twice, changes nothing more. Old versions are closed, never
 * deleted.
 */
export function applierStage(deps: ApplierStageDeps): BatchHandler<typeof Topics.memoryOps> {
  return async (records) => {
    const ops = records.map((record) => record.value);
    const replacements = ops.flatMap((op) => op.replacements);
    const vectors =
      deps.embedder === null || replacements.length === 0
        ? []
        : await deps.embedder.embed(replacements.map(embeddingText));
    let next = 0;
    const writes: OpWrite[] = ops.map((op) => ({
      op,
      embeddings: op.replacements.map(() => vectors[next++]),
    }));
    await deps.store.applyOps(writes);
    return { records: [], state: [] };
  };
}
