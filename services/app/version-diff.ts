import { createHash } from 'node:crypto';
import { InvalidInputError } from '../core/errors.js';
import type { MemoryEntry } from '../core/model/generated.js';
import type { MemoryStore } from '../core/ports/memory-store.js';

/**
 * Compares the current memories of two pipeline versions (typically the live store and a replay of the raw
 * log into a second store with a changed configuration).
 *
 * Memory ids hash the pipeline configuration, so the same content has different ids in the two versions:
 * memories are matched by origin instead. The match key of a memory is
 * `JSON.stringify([userId, conversationId, kind, sourceTurnIds sorted])`, within one tenant; all the memories
 * of one side with the same key form a group (an extractor may write several facts from the same turns).
 */

/** One group of memories (one match key) shown as an example; texts are the group's texts, sorted. */
export interface DiffSample {
  readonly tenantId: string;
  readonly key: string;
  readonly userId: string;
  /** The group's texts in the `from` version, sorted, one per line, cut to 200 characters. */
  readonly before?: string;
  /** The group's texts in the `to` version, sorted, one per line, cut to 200 characters. */
  readonly after?: string;
  /** The source turns of the group (sorted). */
  readonly sourceTurnIds: readonly string[];
}

/**
 * The difference of two versions. `before` / `after` count memories; `unchanged`, `changed`, `added` and
 * `removed` count memories grouped by origin (match keys), not memories: a group of two facts from the
 * same turns is one unit, unchanged when both versions hold the same multiset of texts for it.
 */
export interface VersionDiff {
  readonly from: string;
  readonly to: string;
  readonly tenants: readonly string[];
  /** Current memories of the `from` version in these tenants. */
  readonly before: number;
  /** Current memories of the `to` version in these tenants. */
  readonly after: number;
  /** Groups (match keys) in both versions with the same multiset of texts. */
  readonly unchanged: number;
  /** Groups in both versions whose texts differ. */
  readonly changed: number;
  /** Groups only in the `to` version. */
  readonly added: number;
  /** Groups only in the `from` version. */
  readonly removed: number;
  /** At most `sampleLimit` groups of each outcome, ordered by tenant id, then key. */
  readonly samples: {
    readonly changed: DiffSample[];
    readonly added: DiffSample[];
    readonly removed: DiffSample[];
  };
}

/** A version to compare: a name for the report and the store holding its memories (only `list` is used). */
export interface DiffSide {
  readonly name: string;
  readonly store: Pick<MemoryStore, 'list'>;
}

export interface DiffInput {
  readonly from: DiffSide;
  readonly to: DiffSide;
  readonly tenants: readonly string[];
  /** Samples kept of each outcome (default 5). */
  readonly sampleLimit?: number | undefined;
  /** Memories read per `list` call (default 500). */
  readonly pageSize?: number | undefined;
}

export const DEFAULT_SAMPLE_LIMIT = 5;
export const DEFAULT_PAGE_SIZE = 500;
const SAMPLE_TEXT_CHARS = 200;
const HASH_MODULUS = 1n << 256n;

type Outcome = 'changed' | 'added' | 'removed';

/** The match key of a memory: where it came from, not what it says or which version wrote it. */
export function matchKey(
  entry: Pick<MemoryEntry, 'userId' | 'conversationId' | 'kind' | 'sourceTurnIds'>,
): string {
  return JSON.stringify([entry.userId, entry.conversationId, entry.kind, [...entry.sourceTurnIds].sort()]);
}

/**
 * Reads both versions page by page. Memory stays bounded by the number of match keys of one tenant: each
 * side keeps only a map from key to a hash of the key's texts, plus the samples. The members of a group may
 * come on different pages (stores list in event-time order), so the hash of a group is a multiset hash: the
 * sum of the SHA-256 of each text modulo 2^256, which does not depend on the order the texts arrive in and
 * equals for two groups exactly when (short of a collision) their sorted text lists are equal. Sample texts
 * are read again, for the sampled keys only, once the outcomes are known.
 */
export async function diffVersions(input: DiffInput): Promise<VersionDiff> {
  const sampleLimit = input.sampleLimit ?? DEFAULT_SAMPLE_LIMIT;
  const pageSize = input.pageSize ?? DEFAULT_PAGE_SIZE;
  if (!Number.isSafeInteger(sampleLimit) || sampleLimit < 0) {
    throw new InvalidInputError('sampleLimit must be a non-negative integer', 'sampleLimit');
  }
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
    throw new InvalidInputError('pageSize must be a positive integer', 'pageSize');
  }
  const tenants = [...new Set(input.tenants)];
  const totals = { before: 0, after: 0, unchanged: 0, changed: 0, added: 0, removed: 0 };
  const samples: Record<Outcome, DiffSample[]> = { changed: [], added: [], removed: [] };

  // Tenants in sorted order, keys sorted within each: the first samples found are the first by (tenant, key).
  for (const tenantId of [...tenants].sort()) {
    const before = await groupHashes(input.from.store, tenantId, pageSize);
    const after = await groupHashes(input.to.store, tenantId, pageSize);
    totals.before += before.memories;
    totals.after += after.memories;

    const keys: Record<Outcome, string[]> = { changed: [], added: [], removed: [] };
    for (const [key, hash] of before.groups) {
      const other = after.groups.get(key);
      if (other === undefined) keys.removed.push(key);
      else if (other === hash) totals.unchanged++;
      else keys.changed.push(key);
    }
    for (const key of after.groups.keys()) {
      if (!before.groups.has(key)) keys.added.push(key);
    }
    totals.changed += keys.changed.length;
    totals.added += keys.added.length;
    totals.removed += keys.removed.length;

    const wanted = new Map<string, Outcome>();
    for (const outcome of ['changed', 'added', 'removed'] as const) {
      const room = sampleLimit - samples[outcome].length;
      if (room <= 0) continue;
      for (const key of keys[outcome].sort().slice(0, room)) wanted.set(key, outcome);
    }
    if (wanted.size === 0) continue;
    const beforeTexts = await groupTexts(input.from.store, tenantId, pageSize, wanted);
    const afterTexts = await groupTexts(input.to.store, tenantId, pageSize, wanted);
    for (const [key, outcome] of [...wanted].sort(([a], [b]) => compare(a, b))) {
      const old = beforeTexts.get(key);
      const current = afterTexts.get(key);
      const origin = old ?? current;
      if (origin === undefined) continue; // Gone between the two reads (a store being written to).
      samples[outcome].push({
        tenantId,
        key,
        userId: origin.userId,
        ...(old === undefined ? {} : { before: sampleText(old.texts) }),
        ...(current === undefined ? {} : { after: sampleText(current.texts) }),
        sourceTurnIds: origin.sourceTurnIds,
      });
    }
  }

  return { from: input.from.name, to: input.to.name, tenants, ...totals, samples };
}

/** Every current memory of a tenant, page by page. */
async function* currentMemories(
  store: Pick<MemoryStore, 'list'>,
  tenantId: string,
  pageSize: number,
): AsyncGenerator<MemoryEntry> {
  let cursor: string | undefined;
  for (;;) {
    const page = await store.list({ scope: { tenantId }, limit: pageSize, cursor, includeSuperseded: false });
    yield* page.items;
    if (page.nextCursor === null) return;
    if (page.nextCursor === cursor) throw new Error(`store listed the same page twice (tenant ${tenantId})`);
    cursor = page.nextCursor;
  }
}

/** For each match key, the multiset hash of its texts; and how many memories were read. */
async function groupHashes(
  store: Pick<MemoryStore, 'list'>,
  tenantId: string,
  pageSize: number,
): Promise<{ groups: Map<string, bigint>; memories: number }> {
  const groups = new Map<string, bigint>();
  let memories = 0;
  for await (const entry of currentMemories(store, tenantId, pageSize)) {
    memories++;
    const key = matchKey(entry);
    groups.set(key, ((groups.get(key) ?? 0n) + textHash(entry.text)) % HASH_MODULUS);
  }
  return { groups, memories };
}

interface GroupTexts {
  readonly userId: string;
  readonly sourceTurnIds: readonly string[];
  readonly texts: string[];
}

/** The texts of the wanted keys only. */
async function groupTexts(
  store: Pick<MemoryStore, 'list'>,
  tenantId: string,
  pageSize: number,
  wanted: ReadonlyMap<string, Outcome>,
): Promise<Map<string, GroupTexts>> {
  const groups = new Map<string, GroupTexts>();
  for await (const entry of currentMemories(store, tenantId, pageSize)) {
    const key = matchKey(entry);
    if (!wanted.has(key)) continue;
    let group = groups.get(key);
    if (group === undefined) {
      group = { userId: entry.userId, sourceTurnIds: [...entry.sourceTurnIds].sort(), texts: [] };
      groups.set(key, group);
    }
    group.texts.push(entry.text);
  }
  return groups;
}

function textHash(text: string): bigint {
  return BigInt(`0x${createHash('sha256').update(text, 'utf8').digest('hex')}`);
}

/** The group's texts sorted, one per line, cut to 200 characters (the last one an ellipsis when cut). */
function sampleText(texts: readonly string[]): string {
  const text = [...texts].sort().join('\n');
  if (text.length <= SAMPLE_TEXT_CHARS) return text;
  let cut = text.slice(0, SAMPLE_TEXT_CHARS - 1);
  // Never end on half of a surrogate pair.
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut}…`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
