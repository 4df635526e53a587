import type { MemoryEntry } from '../../core/model/generated.js';
import type { UpdateCase } from './decision.js';
import { compareByTime } from './update-queues.js';

/** The policy that needs no LLM: near-duplicates of one speaker become one version. */
export interface NearDuplicateSettings {
  /** Least cosine similarity of two memories that say the same thing (default 0.97). */
  readonly similarity: number;
}

export function nearDuplicatePolicy(settings: NearDuplicateSettings): string {
  return `near-duplicate@${settings.similarity}`;
}

/**
 * Groups of near-duplicates among the cases: a target and a source at least `similarity` alike, said by the
 * same speaker, of the same kind, are linked; linked memories form one group (union-find), so a memory
 * that duplicates two others ends in one merge, not in two that race. Groups come oldest first, members
 * oldest first.
 */
export function nearDuplicateGroups(
  cases: readonly UpdateCase[],
  settings: NearDuplicateSettings,
): MemoryEntry[][] {
  const parent = new Map<string, string>();
  const entries = new Map<string, MemoryEntry>();
  const find = (id: string): string => {
    let root = id;
    for (let up = parent.get(root); up !== undefined && up !== root; up = parent.get(root)) root = up;
    // Path compression keeps later finds short.
    for (let node = id; node !== root;) {
      const next = parent.get(node) ?? root;
      parent.set(node, root);
      node = next;
    }
    return root;
  };
  const link = (a: MemoryEntry, b: MemoryEntry): void => {
    for (const entry of [a, b]) {
      if (!entries.has(entry.id)) {
        entries.set(entry.id, entry);
        parent.set(entry.id, entry.id);
      }
    }
    const [ra, rb] = [find(a.id), find(b.id)];
    if (ra !== rb) parent.set(ra < rb ? rb : ra, ra < rb ? ra : rb);
  };
  for (const { target, sources } of cases) {
    for (const { memory, similarity } of sources) {
      if (similarity < settings.similarity) continue;
      if (memory.speaker !== target.speaker || memory.kind !== target.kind) continue;
      link(target, memory);
    }
  }
  const groups = new Map<string, MemoryEntry[]>();
  for (const [id, entry] of entries) {
    const root = find(id);
    groups.set(root, [...(groups.get(root) ?? []), entry]);
  }
  return [...groups.values()]
    .map((members) => members.sort(compareByTime))
    .sort((a, b) => compareByTime(a[0] as MemoryEntry, b[0] as MemoryEntry));
}
