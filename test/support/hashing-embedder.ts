import type { Embedder } from '../../services/core/ports/embedder.js';

/**
 * A deterministic test Embedder: feature hashing of lowercased word unigrams (signed, FNV-1a) into `dims`
 * buckets, L2-normalised. Texts sharing words get a positive cosine similarity, texts sharing none are near
 * orthogonal. No model, no I/O. Tests only.
 */
export class HashingEmbedder implements Embedder {
  readonly id: string;
  readonly calls: number[] = [];

  constructor(readonly dims: number = 64) {
    if (!Number.isSafeInteger(dims) || dims < 2)
      throw new Error(`dims must be an integer >= 2 (got ${dims})`);
    this.id = `test-hashing-${dims}`;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.calls.push(texts.length);
    return texts.map((text) => this.embedOne(text));
  }

  embedOne(text: string): Float32Array {
    const vector = new Float32Array(this.dims);
    for (const [word] of text.toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) {
      const hash = fnv1a(word);
      // Low bits choose the bucket, the top bit the sign (keeps collisions from only ever adding up).
      vector[hash % this.dims] = (vector[hash % this.dims] ?? 0) + (hash & 0x80000000 ? -1 : 1);
    }
    let norm = 0;
    for (const value of vector) norm += value * value;
    // A text without words still gets a unit vector (the contract says L2-normalised), always the same one.
    if (norm === 0) {
      vector[0] = 1;
      return vector;
    }
    const scale = 1 / Math.sqrt(norm);
    for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] ?? 0) * scale;
    return vector;
  }
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
