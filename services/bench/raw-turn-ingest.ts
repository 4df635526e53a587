/**
 * The baselines of the recall benchmarks: conversation turns written straight into the memory store, one
 * memory per turn with its full text, no compression, segmentation or extraction. What a plain RAG over
 * the raw history retrieves, searched through the same search path as the pipeline's memories.
 */
import { storedOrEmbedded } from '../app/stored-vectors.js';
import type { Clock } from '../core/ports/clock.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { MemoryStore, MemoryWrite } from '../core/ports/memory-store.js';
import type { MemoryEntry } from '../core/model/generated.js';
import { stableId } from '../core/model/ids.js';
import { approxTokenCount } from '../core/text/token-count.js';
import type { InputItem, TurnInput } from '../ingest/index.js';

export const rawBaselines = ['bm25-raw', 'dense-raw', 'hybrid-raw'] as const;
export type RawBaseline = (typeof rawBaselines)[number];

export function isRawBaseline(value: string): value is RawBaseline {
  return (rawBaselines as readonly string[]).includes(value);
}

/**
 * The store's fusion weights for each baseline (bm25: lexical only; dense: kNN only; hybrid: the
 * configured fusion). Baselines are plain retrievers: the search's query cues are off for all three.
 */
export function baselineFusion<T extends { readonly lexicalWeight: number; readonly semanticWeight: number }>(
  baseline: RawBaseline,
  hybrid: T,
): T {
  if (baseline === 'bm25-raw') return { ...hybrid, lexicalWeight: 1, semanticWeight: 0 };
  if (baseline === 'dense-raw') return { ...hybrid, lexicalWeight: 0, semanticWeight: 1 };
  return { ...hybrid };
}

export interface RawIngestReport {
  readonly accepted: number;
  readonly rejected: number;
  readonly turns: number;
  readonly tokens: number;
}

const rawPipeline = {
  scorer: 'none',
  segmenter: 'none',
  extractor: 'raw-turn',
  promptHash: null,
} as const;

/** One memory of a raw turn: deterministic id, the turn's text, speaker and time, the turn as its source. */
export function rawTurnMemory(event: TurnInput, ingestedAt: number, embedderId: string | null): MemoryEntry {
  return {
    id: stableId('raw', [event.tenantId, event.userId, event.conversationId, event.turnId]),
    tenantId: event.tenantId,
    userId: event.userId,
    agentId: event.agentId,
    conversationId: event.conversationId,
    sessionId: event.sessionId,
    text: event.text,
    kind: 'fact',
    topicId: event.sessionId,
    speaker: event.speaker,
    occurredAt: event.occurredAt,
    zoneOffset: event.zoneOffset,
    ingestedAt,
    validFrom: event.occurredAt,
    validTo: null,
    supersededBy: null,
    sourceTurnIds: [event.turnId],
    pipeline: { ...rawPipeline, embedder: embedderId },
    sourceText: null,
  };
}

/**
 * Writes every turn of `items` as a memory, in batches (one embedding call and one upsert per batch).
 * `embedder` null: lexical only (the bm25 baseline stores no vectors).
 */
export async function ingestRawTurns(
  items: AsyncIterable<InputItem> | Iterable<InputItem>,
  deps: {
    readonly store: MemoryStore;
    readonly embedder: Embedder | null;
    readonly clock: Clock;
    /** Whose turns become memories (the summarizer's `memorizeRoles`, so pipeline and baseline agree). */
    readonly roles: ReadonlySet<string>;
  },
  batchSize = 256,
): Promise<RawIngestReport> {
  let accepted = 0;
  let rejected = 0;
  let turns = 0;
  let tokens = 0;
  let batch: MemoryEntry[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    // A data dir asked again (`--data-dir`) holds its turns' vectors already: only new turns are embedded.
    const vectors =
      deps.embedder === null
        ? new Map<string, Float32Array>()
        : await storedOrEmbedded(deps.store, batch, deps.embedder);
    const writes: MemoryWrite[] = batch.map((entry) => ({ entry, embedding: vectors.get(entry.id) }));
    await deps.store.upsert(writes);
    batch = [];
  };
  for await (const item of items) {
    if (!item.result.ok) {
      rejected++;
      continue;
    }
    accepted++;
    const event = item.result.event;
    if (event.kind !== 'turn' || event.text.trim() === '' || !deps.roles.has(event.role)) continue;
    turns++;
    tokens += approxTokenCount(event.text);
    batch.push(rawTurnMemory(event, deps.clock.now(), deps.embedder?.id ?? null));
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  return { accepted, rejected, turns, tokens };
}
