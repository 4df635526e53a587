import type { MemoryEntry, MemoryOp, PipelineVersion } from '../../services/core/model/generated.js';
import { stableId } from '../../services/core/model/ids.js';
import type { Embedder } from '../../services/core/ports/embedder.js';
import type { MemoryWrite } from '../../services/core/ports/memory-store.js';

/** 2025-01-01T00:00:00Z: a fixed base time so tests never depend on the wall clock. */
export const T0 = Date.UTC(2025, 0, 1);
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

export type EntryOverrides = Partial<Omit<MemoryEntry, 'pipeline'>> & { pipeline?: Partial<PipelineVersion> };

/**
 * A valid MemoryEntry with sensible defaults. The default id is derived from the scope, text, kind and
 * occurredAt, so the same overrides always give the same id (handy for idempotency tests); pass `id`
 * to control it.
 */
export function makeEntry(overrides: EntryOverrides = {}): MemoryEntry {
  const { pipeline, ...fields } = overrides;
  const base = {
    tenantId: 'tenant-a',
    userId: 'user-1',
    agentId: null,
    conversationId: 'conv-1',
    sessionId: 'sess-1',
    text: 'The customer prefers email over phone calls.',
    kind: 'fact' as const,
    topicId: 'seg-1',
    speaker: 'customer',
    occurredAt: T0,
    zoneOffset: '+00:00',
    ingestedAt: T0 + HOUR,
    validFrom: T0,
    validTo: null,
    supersededBy: null,
    sourceTurnIds: ['turn-1'],
    sourceText: null,
    ...fields,
  };
  const id =
    fields.id ??
    stableId('mem', [
      base.tenantId,
      base.userId,
      base.agentId ?? '',
      base.conversationId,
      base.sessionId,
      base.text,
      base.kind,
      String(base.occurredAt),
    ]);
  return {
    ...base,
    id,
    pipeline: {
      scorer: 'builtin-1',
      segmenter: 'builtin-1',
      extractor: 'extractive-1',
      promptHash: null,
      embedder: null,
      ...pipeline,
    },
  };
}

/** Writes without embeddings (lexical-only stores). */
export function plainWrites(entries: readonly MemoryEntry[]): MemoryWrite[] {
  return entries.map((entry) => ({ entry }));
}

/** Embeds every entry's text with `embedder` and stamps `pipeline.embedder` with its id. */
export async function embeddedWrites(
  embedder: Embedder,
  entries: readonly MemoryEntry[],
): Promise<MemoryWrite[]> {
  const vectors = await embedder.embed(entries.map((entry) => entry.text));
  return entries.map((entry, i) => {
    const embedding = vectors[i];
    if (embedding === undefined) throw new Error(`embedder returned no vector for entry ${i}`);
    return { entry: { ...entry, pipeline: { ...entry.pipeline, embedder: embedder.id } }, embedding };
  });
}

/** A valid MemoryOp of tenant-a / user-1 with sensible defaults; the caller names the id, kind and targets. */
export function makeOp(fields: Partial<MemoryOp> & Pick<MemoryOp, 'opId' | 'op' | 'targetIds'>): MemoryOp {
  return {
    tenantId: 'tenant-a',
    userId: 'user-1',
    replacementIds: [],
    reason: 'test',
    requestedBy: 'consolidation',
    requestedAt: T0 + 10 * DAY,
    sourceIds: [],
    validTo: null,
    decidedBy: 'test',
    replacements: [],
    ...fields,
  };
}
