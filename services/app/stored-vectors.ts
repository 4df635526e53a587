import type { Embedder } from '../core/ports/embedder.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { MemoryEntry } from '../core/model/generated.js';
import { embeddingText } from '../core/text/embedding-text.js';

/**
 * The vector of each entry: the one `store` already holds for its id (same model), else embedded now, all
 * missing ones in one call. Copying memories between stores and asking a data dir again then pay the model
 * only for what is new.
 */
export async function storedOrEmbedded(
  store: MemoryStore,
  entries: readonly MemoryEntry[],
  embedder: Embedder,
): Promise<Map<string, Float32Array>> {
  const vectors = new Map<string, Float32Array>();
  for (const tenantId of new Set(entries.map((entry) => entry.tenantId))) {
    const ids = entries.filter((entry) => entry.tenantId === tenantId).map((entry) => entry.id);
    for (const [id, vector] of await store.embeddings({ tenantId }, ids)) vectors.set(id, vector);
  }
  const missing = entries.filter((entry) => !vectors.has(entry.id));
  const computed = missing.length === 0 ? [] : await embedder.embed(missing.map(embeddingText));
  missing.forEach((entry, i) => {
    const vector = computed[i];
    if (vector !== undefined) vectors.set(entry.id, vector);
  });
  return vectors;
}
