import type { MemoryEntry } from '../../core/model/generated.js';
import type { Neighbour } from '../../core/ports/memory-store.js';
import type { UpdateCase } from './decision.js';

/** LightMem's queue settings (reference §9.2–9.3), all configurable. */
export interface QueueSettings {
  /** Neighbours fetched per new memory (LightMem: 20). */
  readonly topK: number;
  /** Kept per queue after the threshold (LightMem: 10). */
  readonly keepTopN: number;
  /** Least cosine similarity of a source to its target (LightMem's README and LongMemEval runs: 0.8). */
  readonly threshold: number;
}

/** Order of event time: occurredAt, then id (a total order, so equal times still have one direction). */
export function compareByTime(a: MemoryEntry, b: MemoryEntry): number {
  return a.occurredAt - b.occurredAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** Whether `target` already cites every turn `source` cites: it holds the source already (a merged version). */
function incorporates(target: MemoryEntry, source: MemoryEntry): boolean {
  if (source.sourceTurnIds.length === 0) return false;
  const cited = new Set(target.sourceTurnIds);
  return source.sourceTurnIds.every((turn) => cited.has(turn));
}

/**
 * The update queue of one new memory (LightMem's `update_queue`): its nearest earlier memories of the same
 * user, itself excluded, at least `threshold` similar, best `keepTopN`. "Earlier" is strict in
 * (occurredAt, id): LightMem lets two facts of one message qualify both ways, so each could delete the
 * other; here the one with the greater id is the newer. A target that already cites all of the source's
 * turns (a version merged from it) is left out, so a source is never merged into the same memory twice.
 */
export function updateQueue(
  source: MemoryEntry,
  neighbours: readonly Neighbour[],
  settings: QueueSettings,
): Neighbour[] {
  return neighbours
    .filter(
      ({ memory, similarity }) =>
        memory.id !== source.id &&
        memory.tenantId === source.tenantId &&
        memory.userId === source.userId &&
        compareByTime(memory, source) < 0 &&
        similarity >= settings.threshold &&
        !incorporates(memory, source),
    )
    .sort((a, b) => b.similarity - a.similarity || compareByTime(a.memory, b.memory))
    .slice(0, settings.keepTopN);
}

/**
 * The transpose of the queues: each target with the newer memories that may change it (LightMem scans every
 * entry for every target, O(N²); this inverts the queues of the new memories in one pass). Targets and
 * their sources come oldest first, so the cases and their order are the same however the queues were found.
 */
export function invertQueues(
  queues: readonly { readonly source: MemoryEntry; readonly queue: readonly Neighbour[] }[],
): UpdateCase[] {
  const byTarget = new Map<
    string,
    { target: MemoryEntry; sources: Map<string, UpdateCase['sources'][number]> }
  >();
  for (const { source, queue } of queues) {
    for (const { memory, similarity } of queue) {
      let item = byTarget.get(memory.id);
      if (item === undefined) {
        item = { target: memory, sources: new Map() };
        byTarget.set(memory.id, item);
      }
      item.sources.set(source.id, { memory: source, similarity });
    }
  }
  return [...byTarget.values()]
    .map(({ target, sources }) => ({
      target,
      sources: [...sources.values()].sort((a, b) => compareByTime(a.memory, b.memory)),
    }))
    .sort((a, b) => compareByTime(a.target, b.target));
}
