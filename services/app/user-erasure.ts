import type { RunHistories } from '../core/ports/run-histories.js';
import type { Clock } from '../core/ports/clock.js';
import type { EventLog, LogErasure } from '../core/ports/event-log.js';
import type { LlmLedger } from '../core/ports/llm-ledger.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import { LightmemError, errorMessage } from '../core/errors.js';
import { assertId } from '../core/model/scope.js';
import { Topics, type TopicName } from '../core/model/topics.js';

/**
 * Where an erasure removed something: the memory store (every version of every memory, with its vector,
 * full-text row, recorded ops and pending consolidation), one topic of the event log (or, where the log is
 * append-only, the user's keys that sealed every record about them: `event-log:user-keys`), one stage's keyed
 * state (buffers, seen-turn keys), or the LLM cost ledger (the user's calls: answers deleted, the records
 * stripped of user and conversation).
 */
export type ErasureLocation =
  | 'memory-store'
  | `event-log:${TopicName}`
  | 'event-log:user-keys'
  | `stage-state:${string}`
  | 'llm-ledger'
  | 'consolidation-runs';

export interface ErasureCount {
  readonly where: ErasureLocation;
  /** Items removed there: memories (versions), log records, state keys, ledger calls. */
  readonly count: number;
}

/**
 * The receipt of erasing one user (JSON as it is; the HTTP API answers `DELETE /v1/users/:userId` with it):
 *
 * - `tenantId`, `userId`: who was erased.
 * - `erasedAt`: when the erasure began (ISO 8601, UTC). Everything of the user from before it is gone, and
 *   the tombstone keeps any replay from deriving it again.
 * - `removed`: every place that was searched, with how many items were removed there (0 included), in a
 *   fixed order: memory store, each log topic, each stage's state, the LLM ledger.
 * - `tombstone`: the user's tombstone is in the event log (always true once a receipt is returned; the log
 *   keeps the receipt with it).
 *
 * Erasing again returns a receipt with zero counts: nothing was left.
 */
export interface ErasureReceipt {
  readonly tenantId: string;
  readonly userId: string;
  readonly erasedAt: string;
  readonly removed: readonly ErasureCount[];
  readonly tombstone: boolean;
}

export interface UserErasureDeps {
  readonly log: EventLog;
  readonly store: MemoryStore;
  readonly ledger: LlmLedger;
  readonly clock: Clock;
  /**
   * The logs and stores of the other pipeline versions (replays beside the first): each is erased after
   * the first version's log, its counts added to the receipt's.
   */
  readonly laterVersions?: (() => Promise<readonly { log: EventLog; store: MemoryStore }[]>) | undefined;
  /** Where the scheduler keeps the user's consolidation runs (Temporal's histories), when it does. */
  readonly runHistories?: RunHistories | undefined;
}

/**
 * Erases one user of a tenant everywhere, in an order that a crash at any point leaves safe to finish by
 * running it again:
 *
 * 1. the event log, in one transaction: the tombstone, every record about the user in every topic (the
 *    raw turns, so nothing can be derived from them again, and everything derived), their idempotency
 *    keys, and the stage state of their conversations (buffers, seen turns). It goes first so that the
 *    running pipeline cannot make new memories of the user after the store is cleared: from here on, a
 *    stage batch that read the user's records before and commits after has its output for the user
 *    dropped, and replay finds nothing of them to replay;
 * 2. the memory store: every version, vector, full-text row, recorded op and pending consolidation of the
 *    user; it also refuses, from then on, memories and ops of the user made before the erasure (an
 *    indexer batch or a consolidation in flight during it);
 * 3. the LLM ledger: the answers of the user's calls (they hold the user's facts), and the user's name on
 *    the call records (the tenant's tokens stay counted);
 * 4. the receipt, recorded with the tombstone, which marks the erasure complete.
 *
 * A crash after step 1 leaves the tombstone without `completedAt`: `resumeIncomplete` (or erasing the user
 * again) finishes the job. Every step is idempotent.
 */
export class UserErasure {
  constructor(private readonly deps: UserErasureDeps) {}

  async erase(tenantId: string, userId: string): Promise<ErasureReceipt> {
    assertId(tenantId, 'tenantId');
    assertId(userId, 'userId');
    const { log, store, ledger, clock } = this.deps;
    const erasedAt = clock.now();
    let fromLog = await step('the event log', () => log.eraseUser(tenantId, userId, erasedAt));
    let memories = (await step('the memory store', () => store.erase({ tenantId, userId }))).length;
    for (const version of (await this.deps.laterVersions?.()) ?? []) {
      fromLog = addErasures(
        fromLog,
        await step("a replayed version's log", () => version.log.eraseUser(tenantId, userId, erasedAt)),
      );
      memories += (await step("a replayed version's store", () => version.store.erase({ tenantId, userId })))
        .length;
    }
    const calls = await step('the LLM ledger', () => ledger.eraseUser(tenantId, userId));
    const histories = this.deps.runHistories;
    const runs: ErasureCount[] =
      histories === undefined
        ? []
        : [
            {
              where: 'consolidation-runs',
              count: await step('the consolidation runs', () => histories.eraseUser(tenantId, userId)),
            },
          ];
    const receipt: ErasureReceipt = {
      tenantId,
      userId,
      erasedAt: new Date(erasedAt).toISOString(),
      removed: [
        { where: 'memory-store', count: memories },
        ...logCounts(fromLog),
        { where: 'llm-ledger', count: calls },
        ...runs,
      ],
      tombstone: true,
    };
    await step('recording the receipt', () =>
      log.completeErasure(tenantId, userId, JSON.stringify(receipt), clock.now()),
    );
    return receipt;
  }

  /**
   * Finishes the erasures a crash interrupted (tombstones without `completedAt`), of one tenant or of
   * all; returns their receipts (the counts of what was still left).
   */
  async resumeIncomplete(tenantId?: string): Promise<ErasureReceipt[]> {
    const receipts: ErasureReceipt[] = [];
    for (const tombstone of await this.deps.log.erasures(tenantId)) {
      if (tombstone.completedAt !== null) continue;
      receipts.push(await this.erase(tombstone.tenantId, tombstone.userId));
    }
    return receipts;
  }
}

/** Two logs' erasures, summed per topic and per group. */
function addErasures(a: LogErasure, b: LogErasure): LogErasure {
  const records = { ...a.records };
  for (const [topic, count] of Object.entries(b.records) as [TopicName, number][]) {
    records[topic] = (records[topic] ?? 0) + count;
  }
  const state = { ...a.state };
  for (const [group, count] of Object.entries(b.state)) state[group] = (state[group] ?? 0) + count;
  const keys = a.keys === undefined && b.keys === undefined ? undefined : (a.keys ?? 0) + (b.keys ?? 0);
  return { records, state, ...(keys === undefined ? {} : { keys }) };
}

/** The log's part of the receipt: every topic in pipeline order, then each group's state. */
function logCounts(erasure: LogErasure): ErasureCount[] {
  const topics = Object.values(Topics).flatMap((topic): ErasureCount[] => {
    const count = erasure.records[topic];
    return count === undefined ? [] : [{ where: `event-log:${topic}`, count }];
  });
  if (erasure.keys !== undefined) topics.push({ where: 'event-log:user-keys', count: erasure.keys });
  const state = Object.entries(erasure.state)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([group, count]): ErasureCount => ({ where: `stage-state:${group}`, count }));
  return [...topics, ...state];
}

/** Runs one step; a failure says which step failed (typed errors keep their code and retryability). */
async function step<R>(what: string, run: () => Promise<R>): Promise<R> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof LightmemError) throw error;
    throw new LightmemError('internal', `erasing a user: ${what} failed: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}
