import type { Client } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import type { MemoryWrite } from '../../core/ports/memory-store.js';
import { checkWriteEmbedder, type StoredEmbedder } from '../memory/embedder-check.js';
import { responseBody, statusOf } from './es-errors.js';
import { EMBEDDER_META_ID, vectorMapping } from './es-mapping.js';

const metaSchema = z.object({
  found: z.boolean(),
  _source: z
    .object({ embedderMeta: z.object({ id: z.string(), dims: z.number().int().positive() }) })
    .optional(),
});

/**
 * The embedder of the index behind the alias, kept in its meta document. The first writer of a vector
 * claims it with an atomic create (a second process that races it reads the winner's and is held to it),
 * then maps the `embedding` field with that dimension. Once known it never changes for the index, so it is
 * cached; while unknown it is read again on every call (another process may have claimed it since).
 */
export class EmbedderRecord {
  private known: StoredEmbedder | null = null;
  private mapped = false;

  constructor(
    private readonly client: Client,
    private readonly alias: string,
  ) {}

  async current(): Promise<StoredEmbedder | null> {
    if (this.known !== null) return this.known;
    let response: unknown;
    try {
      response = await this.client.get({ index: this.alias, id: EMBEDDER_META_ID });
    } catch (error) {
      if (statusOf(error) === 404 && isNotFoundBody(error)) return null;
      throw error;
    }
    const meta = metaSchema.safeParse(response);
    if (!meta.success || meta.data._source === undefined) {
      throw new LightmemError('storage_corrupt', 'memory store: unreadable embedder meta document', {
        cause: meta.error,
      });
    }
    await this.ensureMapping(meta.data._source.embedderMeta);
    this.known = meta.data._source.embedderMeta;
    return this.known;
  }

  /** Records `candidate` unless another embedder got there first; returns the one the index holds. */
  async claim(candidate: StoredEmbedder): Promise<StoredEmbedder> {
    try {
      await this.client.create({
        index: this.alias,
        id: EMBEDDER_META_ID,
        document: { embedderMeta: { id: candidate.id, dims: candidate.dims } },
      });
    } catch (error) {
      if (statusOf(error) !== 409) throw error;
    }
    const stored = await this.current();
    if (stored === null)
      throw new LightmemError('internal', 'embedder meta document vanished after its creation');
    return stored;
  }

  private async ensureMapping(embedder: StoredEmbedder): Promise<void> {
    if (this.mapped) return;
    try {
      await this.client.indices.putMapping({
        index: this.alias,
        properties: { embedding: vectorMapping(embedder.dims) },
      });
    } catch (error) {
      if (statusOf(error) !== 400) throw error;
      throw new LightmemError(
        'storage_corrupt',
        `the embedding field of ${this.alias} does not match the recorded embedder ${embedder.id} (${embedder.dims} dimensions)`,
        { cause: error },
      );
    }
    this.mapped = true;
  }
}

/** A 404 for a missing document (not a missing index: that one is an error). */
function isNotFoundBody(error: unknown): boolean {
  const body = z.object({ found: z.literal(false) }).safeParse(responseBody(error));
  return body.success;
}

/** The embedder the store holds after the whole batch (throws model_mismatch on the first misfit). */
export function checkBatchEmbedder(
  stored: StoredEmbedder | null,
  writes: readonly MemoryWrite[],
): StoredEmbedder | null {
  let embedder = stored;
  for (const { entry, embedding } of writes) {
    if (embedding !== undefined || entry.pipeline.embedder !== null) {
      embedder = checkWriteEmbedder(embedder, entry, embedding);
    }
  }
  return embedder;
}

/**
 * The write hook of a batch that may bring the index's first vectors: it records their embedder just before
 * the batch's first write, once nothing else in the batch can refuse it; if another process recorded
 * another embedder meanwhile, the batch is held to that one (model_mismatch).
 */
export function embedderClaim(
  record: EmbedderRecord,
  stored: StoredEmbedder | null,
  writes: readonly MemoryWrite[],
): () => Promise<void> {
  let claim = stored === null ? checkBatchEmbedder(stored, writes) : null;
  return async () => {
    if (claim === null) return;
    const candidate = claim;
    claim = null;
    const held = await record.claim(candidate);
    if (held.id !== candidate.id || held.dims !== candidate.dims) checkBatchEmbedder(held, writes);
  };
}
