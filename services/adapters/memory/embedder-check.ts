import { InvalidInputError, LightmemError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';

/** The embedder whose vectors a store holds: one store (or index version), one embedder. */
export interface StoredEmbedder {
  readonly id: string;
  readonly dims: number;
}

/**
 * Checks one write against the store's embedder. Vectors of different models are not comparable, so the
 * first embedding written fixes the embedder and its dimension; later writes must match it. Returns the
 * embedder the store holds once this write is in: `stored`, or a new one when this write is the first
 * embedding (the caller records it, in the same transaction or with an atomic create).
 */
export function checkWriteEmbedder(
  stored: StoredEmbedder | null,
  entry: MemoryEntry,
  embedding: Float32Array | undefined,
): StoredEmbedder | null {
  const claimed = entry.pipeline.embedder;
  if (stored !== null && claimed !== null && claimed !== stored.id) {
    throw new LightmemError(
      'model_mismatch',
      `memory ${entry.id} was embedded by ${claimed} but this store holds vectors of ${stored.id}`,
      { field: 'entry.pipeline.embedder' },
    );
  }
  if (embedding === undefined) return stored;
  if (claimed === null) {
    throw new InvalidInputError(
      `memory ${entry.id} has an embedding but no pipeline.embedder`,
      'entry.pipeline.embedder',
    );
  }
  if (stored === null) return { id: claimed, dims: embedding.length };
  if (embedding.length !== stored.dims) {
    throw new LightmemError(
      'model_mismatch',
      `memory ${entry.id} has a ${embedding.length}-dimension embedding; this store holds ${stored.dims}`,
      { field: 'embedding' },
    );
  }
  return stored;
}
