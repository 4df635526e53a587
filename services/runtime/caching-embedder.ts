import { LightmemError } from '../core/errors.js';
import type { Embedder } from '../core/ports/embedder.js';

/**
 * An Embedder that remembers the vectors of recently embedded texts (least recently used first out).
 * In one process the segmenter embeds each exchange again for every buffer it stays in, and for
 * conversations without assistant replies (LoCoMo, calls) the indexer embeds the very texts the segmenter
 * already embedded; both then cost one model call per distinct text. Equal texts within one call are
 * embedded once. The id is the wrapped embedder's: vectors are the same.
 */
export class CachingEmbedder implements Embedder {
  readonly id: string;
  readonly dims: number;
  readonly queryPrefix: string | undefined;
  private readonly vectors = new Map<string, Float32Array>();
  hits = 0;
  misses = 0;

  constructor(
    readonly inner: Embedder,
    private readonly capacity: number,
  ) {
    this.id = inner.id;
    this.dims = inner.dims;
    this.queryPrefix = inner.queryPrefix;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    // Cached vectors are taken now: calls run concurrently (segmenter, indexer, searches share the cache),
    // and another call may evict them while this one waits for the model.
    const found = new Map<string, Float32Array>();
    const missing: string[] = [];
    const asked = new Set<string>();
    for (const text of texts) {
      if (found.has(text) || asked.has(text)) continue;
      const cached = this.vectors.get(text);
      if (cached !== undefined) {
        found.set(text, cached);
        continue;
      }
      asked.add(text);
      missing.push(text);
    }
    const fresh = missing.length === 0 ? [] : await this.inner.embed(missing);
    missing.forEach((text, i) => {
      const vector = fresh[i];
      if (vector !== undefined) found.set(text, vector);
    });
    this.misses += missing.length;
    this.hits += texts.length - missing.length;
    const result = texts.map((text) => {
      const vector = found.get(text);
      if (vector === undefined)
        throw new LightmemError('internal', `${this.id} returned fewer vectors than texts`);
      return vector;
    });
    for (const text of texts) this.remember(text, found.get(text));
    return result;
  }

  private remember(text: string, vector: Float32Array | undefined): void {
    if (vector === undefined || this.capacity <= 0) return;
    // Map keeps insertion order: re-inserting marks the text as most recently used.
    this.vectors.delete(text);
    this.vectors.set(text, vector);
    while (this.vectors.size > this.capacity) {
      const oldest = this.vectors.keys().next();
      if (oldest.done === true) break;
      this.vectors.delete(oldest.value);
    }
  }
}
