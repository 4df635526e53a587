import { setTimeout as sleep } from 'node:timers/promises';
import type { ErasureTombstone, EventLog, LogRecord } from '../core/ports/event-log.js';
import type { PipelineVersion, PipelineVersions } from '../core/ports/pipeline-versions.js';
import { derives } from '../core/ports/pipeline-versions.js';
import { Topics } from '../core/model/topics.js';
import { compositeKey, eventDedupKey } from '../core/model/keys.js';
import type { MemoryEntry } from '../core/model/generated.js';

export interface RawLogCopyDeps {
  /** The data dir's raw log (what every version derives from). */
  readonly source: EventLog;
  /** The version's own log: its raw topic receives the copy, its stages consume it. */
  readonly target: EventLog;
  readonly versions: PipelineVersions;
  readonly version: PipelineVersion;
  /**
   * Erases a user from the version (its log and its store): called when an erasure raced a batch being
   * copied, so that what the batch copied of the user does not outlive the erasure.
   */
  readonly eraseCopied: (tenantId: string, userId: string, erasedAt: number) => Promise<void>;
  /**
   * Copies the memories the version will not derive again into its store (a replay `--since`): those
   * the `keep` test passes, from the versions serving reads now. Runs before anything is copied.
   */
  readonly carryOver?: ((keep: (memory: MemoryEntry) => boolean) => Promise<number>) | undefined;
  readonly batchSize: number;
  /** Wait between looks at the raw log's end once the copy has caught up. */
  readonly pollMs?: number;
}

/**
 * Feeds a pipeline version from the data dir's raw log: copies the raw records of the tenants it derives
 * into its own log, in order, from where it left off (its cursor, kept in the registry), until the signal
 * aborts. A crash between copying a batch and moving the cursor copies the batch again, which the
 * version's log drops by idempotency key; nothing is lost or doubled.
 *
 * Idle flushes are not copied: they are the first version's buffer bookkeeping, and each version's own
 * scheduler flushes its own buffers. Erased users stay erased: their raw records are gone from the source;
 * one whose erasure ran while a batch of theirs was being copied is erased from the version again.
 */
export async function copyRawLog(deps: RawLogCopyDeps, signal: AbortSignal): Promise<void> {
  const { source, versions, version } = deps;
  let cursor = (await versions.get(version.name))?.copied ?? version.copied;
  const { since, sinceOffset } = version;
  // A replay `--since`: the sessions it derives again; memories of the others are carried over.
  const active =
    since === null || sinceOffset === null
      ? null
      : await sessionsActiveSince(source, version, since, sinceOffset, deps.batchSize);
  if (active !== null && cursor === 0) {
    await deps.carryOver?.((memory) => !active.has(sessionKey(memory)));
  }
  const wanted = (record: LogRecord<'lightmem.turns.raw'>): boolean =>
    record.value.kind !== 'flush' &&
    derives(version, record.value.tenantId) &&
    (active === null || record.offset >= (sinceOffset ?? 0) || active.has(sessionKey(record.value)));
  while (!signal.aborted) {
    const records = await source.read(Topics.raw, cursor, deps.batchSize);
    const last = records.at(-1);
    if (last === undefined) {
      // Erased records leave holes; past the last record there is nothing to copy.
      const end = await source.endOffset(Topics.raw);
      if (end > cursor) {
        cursor = end;
        await versions.advance(version.name, cursor);
      }
      await sleep(deps.pollMs ?? 200, undefined, { signal }).catch(() => undefined);
      continue;
    }
    await appendCopied(deps, records.filter(wanted));
    cursor = last.offset + 1;
    await versions.advance(version.name, cursor);
  }
}

export interface RawLogFollowDeps extends Pick<
  RawLogCopyDeps,
  'source' | 'target' | 'version' | 'eraseCopied' | 'batchSize' | 'carryOver'
> {
  /** The consumer group on the source's raw topic whose committed offsets are the copy's cursor. */
  readonly group: string;
  /** Reads the whole raw log once (a replay `--since` looks for the sessions active since then). */
  readonly scan: (visit: (records: readonly LogRecord<'lightmem.turns.raw'>[]) => void) => Promise<void>;
}

/**
 * Feeds a pipeline version from the raw log as a consumer group of it (a log whose offsets are per
 * partition, so no single cursor: Kafka), until the signal aborts. Copies what `copyRawLog` copies (no idle
 * flushes, only the tenants the version derives), a batch at a time; the group commits after the batch is
 * appended. A crash in between copies the batch again, which the version's compressor drops by turn id.
 *
 * A replay `--since`: the records appended before the version was created are copied only for the sessions
 * with a turn since then; the memories of the other sessions are carried over before anything is copied
 * (again after a crash before the first commit: the carry-over is idempotent).
 */
export async function followRawLog(deps: RawLogFollowDeps, signal: AbortSignal): Promise<void> {
  const { version } = deps;
  const since = version.since;
  let active: Set<string> | null = null;
  if (since !== null) {
    const found = new Set<string>();
    await deps.scan((records) => {
      for (const { value, appendedAt } of records) {
        if (appendedAt < version.createdAt && value.occurredAt >= since && derives(version, value.tenantId)) {
          found.add(sessionKey(value));
        }
      }
    });
    active = found;
    if ((await deps.source.committedOffset(deps.group, Topics.raw)) === 0) {
      await deps.carryOver?.((memory) => !found.has(sessionKey(memory)));
    }
  }
  const wanted = (record: LogRecord<'lightmem.turns.raw'>): boolean =>
    record.value.kind !== 'flush' &&
    derives(version, record.value.tenantId) &&
    (active === null || record.appendedAt >= version.createdAt || active.has(sessionKey(record.value)));
  await deps.source.consume(
    { group: deps.group, topic: Topics.raw, signal, batchSize: deps.batchSize },
    async (records) => {
      await appendCopied(deps, records.filter(wanted));
      return { records: [], state: [] };
    },
  );
}

/** Appends copied raw records to the version's log, then erases there whoever an erasure raced. */
async function appendCopied(
  deps: Pick<RawLogCopyDeps, 'source' | 'target' | 'eraseCopied'>,
  kept: readonly LogRecord<'lightmem.turns.raw'>[],
): Promise<void> {
  if (kept.length === 0) return;
  await deps.target.append(
    Topics.raw,
    kept.map((record) => ({ key: record.key, value: record.value, dedupKey: eventDedupKey(record.value) })),
  );
  await eraseRaced(deps, kept);
}

function sessionKey(of: {
  tenantId: string;
  userId: string;
  conversationId: string;
  sessionId: string;
}): string {
  return compositeKey([of.tenantId, of.userId, of.conversationId, of.sessionId]);
}

/** The sessions of the version's tenants with a turn at or after `since`, among the raw records before `end`. */
async function sessionsActiveSince(
  source: EventLog,
  version: PipelineVersion,
  since: number,
  end: number,
  pageSize: number,
): Promise<Set<string>> {
  const active = new Set<string>();
  let offset = 0;
  while (offset < end) {
    const records = await source.read(Topics.raw, offset, Math.max(pageSize, 1_000));
    const last = records.at(-1);
    if (last === undefined) break;
    for (const record of records) {
      const event = record.value;
      if (record.offset < end && event.occurredAt >= since && derives(version, event.tenantId)) {
        active.add(sessionKey(event));
      }
    }
    offset = last.offset + 1;
  }
  return active;
}

/**
 * An erasure that committed between reading a batch and copying it left the user's records in the copy:
 * any user of the batch with a tombstone newer than one of their copied records is erased again in the
 * version (the version's erasure also fences its stages' batches in flight, as the first version's does).
 */
async function eraseRaced(
  deps: Pick<RawLogCopyDeps, 'source' | 'eraseCopied'>,
  copied: readonly LogRecord<'lightmem.turns.raw'>[],
): Promise<void> {
  const oldest = new Map<string, { tenantId: string; userId: string; appendedAt: number }>();
  for (const record of copied) {
    const { tenantId, userId } = record.value;
    const key = compositeKey([tenantId, userId]);
    const seen = oldest.get(key);
    if (seen === undefined || record.appendedAt < seen.appendedAt) {
      oldest.set(key, { tenantId, userId, appendedAt: record.appendedAt });
    }
  }
  const tombstones = new Map<string, ErasureTombstone>();
  for (const tenantId of new Set([...oldest.values()].map((user) => user.tenantId))) {
    for (const tombstone of await deps.source.erasures(tenantId)) {
      tombstones.set(compositeKey([tombstone.tenantId, tombstone.userId]), tombstone);
    }
  }
  for (const [key, user] of oldest) {
    const tombstone = tombstones.get(key);
    if (tombstone !== undefined && user.appendedAt <= tombstone.erasedAt) {
      await deps.eraseCopied(user.tenantId, user.userId, tombstone.erasedAt);
    }
  }
}
