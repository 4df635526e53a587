import { createHash } from 'node:crypto';
import type { MemoryEntry } from '../../core/model/generated.js';

/**
 * Hash of what an upsert writes. Fields go in a fixed order (an array, not an object) so the hash does not
 * depend on key order, and the embedding bytes are included so a new vector for the same text counts as a
 * change. `ingestedAt` is left out on purpose: re-processing the same turns later stamps a new ingest time
 * on an otherwise identical memory, and that must be `unchanged` (the first ingest time is kept).
 * Supersession recorded later by the store (supersede()) is not part of it either: the hash is of the entry
 * as written, so writing the original again is `unchanged`.
 */
export function contentHash(entry: MemoryEntry, embedding: Float32Array | undefined): string {
  const p = entry.pipeline;
  const fields = [
    entry.id,
    entry.tenantId,
    entry.userId,
    entry.agentId,
    entry.conversationId,
    entry.sessionId,
    entry.text,
    entry.kind,
    entry.topicId,
    entry.speaker,
    entry.occurredAt,
    entry.zoneOffset,
    entry.validFrom,
    entry.validTo,
    entry.supersededBy,
    entry.sourceTurnIds,
    [p.scorer, p.segmenter, p.extractor, p.promptHash, p.embedder],
    // Only when set, so entries written before the field existed hash as they did.
    ...(entry.sourceText === null ? [] : [entry.sourceText]),
  ];
  const hash = createHash('sha256').update(JSON.stringify(fields));
  hash.update(embedding === undefined ? '|none' : '|vec');
  if (embedding !== undefined) hash.update(vectorBlob(embedding));
  return hash.digest('hex').slice(0, 32);
}

/** The bytes of a Float32Array (a view, no copy), as sqlite-vec reads them and as the hash sees them. */
export function vectorBlob(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}
