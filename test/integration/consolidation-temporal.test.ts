import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import {
  entityWorkflowId,
  type EntitySettings,
} from '../../services/adapters/temporal/consolidation-entity.js';
import { runConsolidationOnce } from '../../services/adapters/temporal/consolidation-once.js';
import { TemporalConsolidationTrigger } from '../../services/adapters/temporal/consolidation-trigger.js';
import { TemporalRunHistories } from '../../services/adapters/temporal/consolidation-histories.js';
import { runConsolidationWorker } from '../../services/adapters/temporal/consolidation-worker.js';
import { LightmemConfig } from '../../services/core/config.js';
import { LightmemError } from '../../services/core/errors.js';
import type { MemoryEntry, MemoryOp } from '../../services/core/model/generated.js';
import { Topics } from '../../services/core/model/topics.js';
import { systemClock } from '../../services/core/ports/clock.js';
import { consolidationDeps } from '../../services/runtime/consolidation-setup.js';
import { applierStage } from '../../services/stages/applier/applier-stage.js';
import {
  entityStateQuery,
  type consolidationEntityWorkflow,
} from '../../workflows/consolidation/consolidation.workflow.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { DAY, HOUR, T0, embeddedWrites, makeEntry } from '../support/memory-fixtures.js';
import { startFakeOpenAiServer } from '../support/fake-openai-server.js';
import { servers, testLogger } from './support/servers.js';
import { startWorkerProcess, type WorkerProcess } from './support/consolidation-worker-processes.js';

/**
 * Sleep-time consolidation on the real Temporal dev server (`npm run infra:up -- temporal`): entity
 * workflows woken by signal-with-start, the activities over a SQLite store and event log in a temp dir, and
 * the applier applying `lightmem.memory-ops` in this process. The LLM-free policy (near-duplicates merged)
 * runs on a worker in this process; the crash test runs LLM-deciding workers in child processes.
 */

const namespace = 'default';
const embedder = new HashingEmbedder(256);
const dir = mkdtempSync(join(tmpdir(), 'lightmem-consolidation-temporal-'));
const files = {
  store: join(dir, 'memories.db'),
  log: join(dir, 'log.db'),
  ledger: join(dir, 'ledger.db'),
  /** A later pipeline version's own store and log (a replay's, in distributed mode). */
  laterStore: join(dir, 'v2-memories.db'),
  laterLog: join(dir, 'v2-log.db'),
};
/** The dev server outlives the test: workflow ids (per user) and task queues are new on every run. */
const run = randomUUID().slice(0, 8);
const taskQueue = `lightmem-consolidation-test-${run}`;
const endpoint = { address: servers.temporalAddress, namespace, taskQueue };

let store: SqliteMemoryStore;
let log: SqliteEventLog;
let connection: Connection;
let client: Client;
let applier: { stop(): Promise<void> };
let worker: { stop(): Promise<void> };
let laterStore: SqliteMemoryStore;
let laterLog: SqliteEventLog;
let laterApplier: { stop(): Promise<void> };

interface Scope {
  readonly tenantId: string;
  readonly userId: string;
}

/** Entity workflows this run started (terminated at the end: no worker will wake them after). */
const started = new Set<string>();

/** A user of this run (its entity workflow id is new on the server). */
function user(tenantId: string, name: string): Scope {
  const scope = { tenantId, userId: `${name}-${run}` };
  started.add(entityWorkflowId(scope));
  return scope;
}

function startApplier(of = { log, store }): { stop(): Promise<void> } {
  const stop = new AbortController();
  const done = of.log.consume(
    { group: 'applier', topic: Topics.memoryOps, signal: stop.signal, batchSize: 64 },
    applierStage({ store: of.store, embedder }),
  );
  return {
    stop: async () => {
      stop.abort();
      await done;
    },
  };
}

async function startWorker(): Promise<{ stop(): Promise<void> }> {
  const stop = new AbortController();
  const config = LightmemConfig.parse({ consolidation: { policy: 'near-duplicate' } });
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  const depsOf = (of: { store: SqliteMemoryStore; log: SqliteEventLog }) =>
    consolidationDeps({
      config,
      store: of.store,
      log: of.log,
      embedderId: embedder.id,
      decider: null,
      clock: systemClock,
      logger: testLogger,
    });
  const done = runConsolidationWorker({
    ...endpoint,
    deps: depsOf({ store, log }),
    versionDeps: (version) =>
      version === 'v2'
        ? Promise.resolve(depsOf({ store: laterStore, log: laterLog }))
        : Promise.reject(new LightmemError('not_found', `no pipeline version ${version}`)),
    signal: stop.signal,
    logger: testLogger,
    onReady: ready,
  });
  await Promise.race([isReady, done]);
  return {
    stop: async () => {
      stop.abort();
      await done;
    },
  };
}

/** Entity settings of a test: small runs, long waits unless the test says otherwise. */
function entity(overrides: Partial<EntitySettings> = {}): EntitySettings {
  return {
    minNewEntries: 1,
    maxWaitMs: 60_000,
    chunkSize: 2,
    parallelism: 2,
    continueAsNewAfterRuns: 100,
    ...overrides,
  };
}

function trigger(settings: EntitySettings, queue = taskQueue): TemporalConsolidationTrigger {
  return new TemporalConsolidationTrigger({ ...endpoint, taskQueue: queue, entity: settings });
}

/** Memories of one user, each citing its own turn, `hours` after T0; upserted with their vectors. */
async function remember(
  scope: Scope,
  items: readonly { readonly text: string; readonly hours: number }[],
  into: SqliteMemoryStore = store,
): Promise<MemoryEntry[]> {
  const entries = items.map(({ text, hours }) =>
    makeEntry({
      tenantId: scope.tenantId,
      userId: scope.userId,
      text,
      occurredAt: T0 + hours * HOUR,
      validFrom: T0 + hours * HOUR,
      ingestedAt: T0 + DAY,
      sourceTurnIds: [`turn-${randomUUID()}`],
    }),
  );
  await into.upsert(await embeddedWrites(embedder, entries));
  return entries;
}

/** Three near-duplicates (same words), two more, and one unrelated memory: two merges for the LLM-free policy. */
function duplicates(topic: string): { text: string; hours: number }[] {
  return [
    { text: `${topic} prefers green tea in the morning.`, hours: 0 },
    { text: `${topic} prefers green tea in the morning`, hours: 1 },
    { text: `In the morning ${topic} prefers green tea!`, hours: 2 },
    { text: `${topic} has order number 4471 pending.`, hours: 3 },
    { text: `${topic} has order number 4471 pending`, hours: 4 },
    { text: `${topic} visited Lisbon for a conference about sailing boats.`, hours: 5 },
  ];
}

async function pending(scope: Scope): Promise<MemoryEntry[]> {
  return store.pendingConsolidation(scope, 1_000);
}

async function opsOf(tenantId: string, userId?: string): Promise<MemoryOp[]> {
  const records = await log.read(Topics.memoryOps, 0, 100_000);
  return records
    .map((record) => record.value)
    .filter((op) => op.tenantId === tenantId && (userId === undefined || op.userId === userId));
}

/** Polls `probe` until it returns something other than undefined/false. */
async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(100);
  }
}

async function consolidated(scope: Scope, timeoutMs = 30_000): Promise<void> {
  await until(
    `${scope.tenantId}/${scope.userId} consolidated`,
    async () => (await pending(scope)).length === 0,
    timeoutMs,
  );
}

/** The merges of the LLM-free policy on `duplicates`: the 3 and the 2 near-duplicates, each one version. */
async function assertMerged(scope: Scope, entries: readonly MemoryEntry[]): Promise<void> {
  const ops = await opsOf(scope.tenantId, scope.userId);
  const ids = entries.map((entry) => entry.id);
  const merges = ops.filter((op) => op.op === 'update' && op.targetIds.some((id) => ids.includes(id)));
  const groups = (lists: string[][]): string[][] =>
    lists.map((list) => [...list].sort()).sort((a, b) => (a[0] ?? '').localeCompare(b[0] ?? ''));
  assert.deepEqual(
    groups(merges.map((op) => op.targetIds)),
    groups([ids.slice(0, 3), ids.slice(3, 5)]),
    'one merge of the three near-duplicates, one of the two',
  );
  for (const op of merges) {
    const [version] = op.replacements;
    assert.ok(version !== undefined);
    const stored = await store.get(scope, version.id);
    assert.equal(stored?.supersededBy, null, 'the merged version is current');
    assert.deepEqual(
      [...(stored?.sourceTurnIds ?? [])].sort(),
      entries
        .filter((entry) => op.targetIds.includes(entry.id))
        .flatMap((entry) => entry.sourceTurnIds)
        .sort(),
      'the merged version cites the turns of all its members',
    );
    for (const id of op.targetIds) {
      const old = await store.get(scope, id);
      assert.equal(old?.supersededBy, version.id, 'an old version is kept, pointing to the new one');
    }
    const history = await store.history(scope, op.targetIds[0] as string);
    assert.ok(history?.versions.some((entry) => entry.id === version.id));
    assert.ok(history?.ops.some((recorded) => recorded.op.opId === op.opId));
  }
  const unrelated = await store.get(scope, ids[5] as string);
  assert.equal(unrelated?.supersededBy, null, 'the unrelated memory is untouched');
  const hits = await store.search({ scope, text: 'green tea morning', limit: 10 });
  assert.equal(
    hits.filter((hit) => hit.memory.text.includes('green tea')).length,
    1,
    'search sees one current version of the tea preference',
  );
}

before(async () => {
  store = SqliteMemoryStore.open(files.store);
  log = SqliteEventLog.open(files.log, { logger: testLogger, clock: systemClock });
  connection = await Connection.connect({ address: servers.temporalAddress });
  client = new Client({ connection, namespace });
  applier = startApplier();
  laterStore = SqliteMemoryStore.open(files.laterStore);
  laterLog = SqliteEventLog.open(files.laterLog, { logger: testLogger, clock: systemClock });
  laterApplier = startApplier({ log: laterLog, store: laterStore });
  worker = await startWorker();
});

after(async () => {
  await Promise.all(
    [...started].map((id) =>
      client.workflow
        .getHandle(id)
        .terminate('test over')
        .catch(() => undefined),
    ),
  );
  await worker.stop();
  await applier.stop();
  await laterApplier.stop();
  await laterLog.close();
  await laterStore.close();
  await connection.close();
  await log.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('sleep-time consolidation on the Temporal dev server', () => {
  it('signal-driven: runs once N new memories were signalled, applies the merges, marks the sources', async () => {
    const scope = user('tenant-a', 'user-signal');
    const entries = await remember(scope, duplicates('Ana'));
    const wake = trigger(entity({ minNewEntries: 4 }));
    try {
      for (let i = 0; i < 3; i++) await wake.notify([{ ...scope, count: 1 }]);
      const handle = client.workflow.getHandle(entityWorkflowId(scope));
      await until('3 signals counted', async () => (await handle.query(entityStateQuery)).pending === 3);
      await delay(1_000);
      assert.equal((await pending(scope)).length, 6, 'no run below minNewEntries');
      assert.equal((await handle.query(entityStateQuery)).runs, 0);

      await wake.notify([{ ...scope, count: 3 }]);
      await consolidated(scope);
      await assertMerged(scope, entries);
      const state = await until('the run recorded', async () => {
        const current = await handle.query(entityStateQuery);
        return current.runs === 1 && current;
      });
      assert.deepEqual(state.lastRun?.counts, { update: 0, supersede: 0, ignore: 0, merge: 2 });
      assert.equal(state.pending, 0);
      assert.equal(state.running, false);
    } finally {
      await wake.close();
    }
  });

  it("a later pipeline version's users: workflows of their own, whose runs change that version only", async () => {
    const scope = user('tenant-a', 'user-version');
    const versioned = { ...scope, version: 'v2' };
    started.add(entityWorkflowId(versioned));
    assert.notEqual(entityWorkflowId(versioned), entityWorkflowId(scope));
    // The same memories in both versions' stores; only v2's indexer (its trigger) announces them.
    await remember(scope, duplicates('Vera'));
    await remember(scope, duplicates('Vera'), laterStore);
    const wake = new TemporalConsolidationTrigger({ ...endpoint, entity: entity(), version: 'v2' });
    try {
      await wake.notify([{ ...scope, count: 6 }]);
      await until(
        'v2 consolidated',
        async () => (await laterStore.pendingConsolidation(scope, 100)).length === 0,
      );
      const laterOps = (await laterLog.read(Topics.memoryOps, 0, 10_000)).map((record) => record.value);
      const merges = laterOps.filter((op) => op.userId === scope.userId && op.op === 'update');
      assert.equal(merges.length, 2, "the two merges, in v2's log (applied by v2's applier)");
      for (const op of merges) {
        const [merged] = op.replacements;
        assert.equal((await laterStore.get(scope, merged?.id ?? ''))?.supersededBy, null);
      }
      // The first version is untouched: its memories still wait, no op of the user in its log.
      assert.equal((await pending(scope)).length, 6);
      assert.deepEqual(await opsOf(scope.tenantId, scope.userId), []);
      const handle = client.workflow.getHandle(entityWorkflowId(versioned));
      assert.equal((await handle.query(entityStateQuery)).runs, 1);
    } finally {
      await wake.close();
    }
  });

  it("erasure deletes the user's consolidation runs (every version, run-once), and no other user's", async () => {
    const erased = user('tenant-e', 'user-erased');
    const kept = user('tenant-e', 'user-kept');
    started.add(entityWorkflowId({ ...erased, version: 'v2' }));
    await remember(erased, duplicates('Edda'));
    await remember(kept, duplicates('Kurt'));
    const wake = trigger(entity());
    const wakeLater = new TemporalConsolidationTrigger({ ...endpoint, entity: entity(), version: 'v2' });
    const histories = new TemporalRunHistories(endpoint);
    // Every execution whose id names the user (found independently of the adapter's query).
    const executionsOf = async (scope: Scope): Promise<string[]> => {
      const ids: string[] = [];
      for await (const execution of client.workflow.list({ query: "WorkflowId STARTS_WITH 'consolidate'" })) {
        if (execution.workflowId.includes(`:${scope.tenantId}:${scope.userId}`))
          ids.push(execution.workflowId);
      }
      return ids.sort();
    };
    try {
      await wake.notify([
        { ...erased, count: 6 },
        { ...kept, count: 6 },
      ]);
      await wakeLater.notify([{ ...erased, count: 1 }]);
      await consolidated(erased);
      await consolidated(kept);
      await runConsolidationOnce(endpoint, { ...erased, dryRun: true, chunkSize: 4, parallelism: 2 });
      // Visibility is eventually consistent: wait until the three executions of the user are listed.
      await until('the runs listed', async () => (await executionsOf(erased)).length >= 3, 90_000);
      const before = await executionsOf(erased);
      assert.ok(
        before.some((id) => id.startsWith('consolidate-now:')),
        before.join(', '),
      );
      assert.ok(
        before.some((id) => id.endsWith(':v2')),
        before.join(', '),
      );

      const deleted = await histories.eraseUser(erased.tenantId, erased.userId);
      assert.ok(deleted >= 3, `deleted ${deleted}`);
      // The server deletes asynchronously: the visibility store forgets them a moment later.
      await until('the runs gone', async () => (await executionsOf(erased)).length === 0, 90_000);
      assert.ok((await executionsOf(kept)).length >= 1, "the other user's runs stay");
      assert.equal(await histories.eraseUser(erased.tenantId, erased.userId), 0, 'idempotent');
    } finally {
      await wake.close();
      await wakeLater.close();
      await histories.close();
    }
  });

  it('timer-driven: fewer than N signals run maxWaitMs after the first, then the idle workflow completes', async () => {
    const scope = user('tenant-a', 'user-timer');
    const entries = await remember(scope, duplicates('Ben'));
    const wake = trigger(entity({ minNewEntries: 100, maxWaitMs: 2_500 }));
    try {
      const signalledAt = Date.now();
      await wake.notify([{ ...scope, count: 6 }]);
      await delay(1_000);
      assert.equal((await pending(scope)).length, 6, 'no run before the period');
      await consolidated(scope);
      const elapsed = Date.now() - signalledAt;
      assert.ok(elapsed >= 2_000, `ran after the period (${elapsed} ms)`);
      await assertMerged(scope, entries);
      // Nothing pending and no signal for maxWaitMs: the workflow completes; signal-with-start restarts it.
      const handle = client.workflow.getHandle<typeof consolidationEntityWorkflow>(entityWorkflowId(scope));
      const result = await handle.result();
      assert.equal(result.runs, 1);
      assert.equal(result.sources, 6);
      assert.equal(result.decisions, 2);
    } finally {
      await wake.close();
    }
  });

  it('two tenants side by side: each workflow sees and changes only its own tenant', async () => {
    const x = user('tenant-x', 'shared-user');
    const y = user('tenant-y', 'shared-user');
    // The same texts, so the same vectors: a leak across tenants would find the other's memories first.
    const xEntries = await remember(x, duplicates('Cleo'));
    const yEntries = await remember(y, duplicates('Cleo'));
    const wake = trigger(entity());
    try {
      await wake.notify([{ ...x, count: 6 }]);
      await consolidated(x);
      assert.equal((await pending(y)).length, 6, "y's memories are still pending");
      for (const entry of yEntries) {
        assert.equal((await store.get(y, entry.id))?.supersededBy, null, "y's memories are untouched");
      }
      assert.deepEqual(await opsOf('tenant-y'), [], 'no op of tenant y yet');

      // Both at once, with more memories for x.
      const xMore = await remember(x, [
        { text: 'Cleo renewed the gym membership for a year.', hours: 10 },
        { text: 'Cleo renewed the gym membership for a year', hours: 11 },
      ]);
      await wake.notify([
        { ...x, count: 2 },
        { ...y, count: 6 },
      ]);
      await Promise.all([consolidated(x), consolidated(y)]);
      await assertMerged(y, yEntries);

      for (const [scope, own] of [
        [x, [...xEntries, ...xMore]],
        [y, yEntries],
      ] as const) {
        const ops = await opsOf(scope.tenantId);
        const ownIds = new Set(own.map((entry) => entry.id));
        assert.ok(ops.length > 0);
        for (const op of ops) {
          assert.equal(op.userId, scope.userId);
          for (const id of [...op.targetIds, ...op.sourceIds]) {
            assert.ok(ownIds.has(id), `${scope.tenantId}'s op ${op.opId} names only its own memories`);
          }
          for (const version of op.replacements) assert.equal(version.tenantId, scope.tenantId);
        }
      }
      const xOps = await opsOf('tenant-x');
      assert.ok(
        xOps.some((op) => xMore.every((entry) => op.targetIds.includes(entry.id))),
        "x's second batch merged",
      );
      const all = await log.read(Topics.memoryOps, 0, 100_000);
      for (const record of all) {
        if (record.value.tenantId !== 'tenant-x' && record.value.tenantId !== 'tenant-y') continue;
        assert.equal(record.key.includes(record.value.tenantId), true, 'ops keyed by their own tenant');
      }
    } finally {
      await wake.close();
    }
  });

  it('continues as new after a run, without losing a signal that arrived during the run', async () => {
    const scope = user('tenant-a', 'user-can');
    const first = await remember(scope, duplicates('Dora'));
    const wake = trigger(entity({ minNewEntries: 2, continueAsNewAfterRuns: 1 }));
    let held = false;
    try {
      // Hold the applier: the run then waits in finishConsolidation while the second batch is signalled.
      await applier.stop();
      held = true;
      await wake.notify([{ ...scope, count: 6 }]);
      await until(
        'the first run decided',
        async () => (await opsOf(scope.tenantId, scope.userId)).length >= 2,
      );
      const handle = client.workflow.getHandle(entityWorkflowId(scope));
      const firstRun = await handle.describe();
      assert.equal((await handle.query(entityStateQuery)).running, true, 'the first run is in progress');

      const second = await remember(scope, [
        { text: 'Dora booked a table for four at the harbour restaurant.', hours: 20 },
        { text: 'Dora booked a table for four at the harbour restaurant', hours: 21 },
      ]);
      await wake.notify([{ ...scope, count: 2 }]);
      await until('the signal counted', async () => (await handle.query(entityStateQuery)).pending === 2);
      applier = startApplier();
      held = false;

      await consolidated(scope);
      await assertMerged(scope, first);
      const ops = await opsOf(scope.tenantId, scope.userId);
      assert.ok(
        ops.some((op) => second.every((entry) => op.targetIds.includes(entry.id))),
        'the memories signalled during the first run were consolidated by the next',
      );
      const firstDescription = await client.workflow
        .getHandle(entityWorkflowId(scope), firstRun.runId)
        .describe();
      assert.equal(firstDescription.status.name, 'CONTINUED_AS_NEW');
      const latest = await handle.describe();
      assert.notEqual(latest.runId, firstRun.runId, 'a new run of the same workflow id');
      assert.equal(latest.raw.workflowExecutionInfo?.firstRunId, firstRun.runId, 'one chain');
    } finally {
      if (held) applier = startApplier();
      await wake.close();
    }
  });

  it('consolidateOnceWorkflow: the run-once client returns the summary with counts', async () => {
    const scope = user('tenant-a', 'user-once');
    const entries = await remember(scope, duplicates('Eli'));
    const dry = await runConsolidationOnce(endpoint, {
      ...scope,
      dryRun: true,
      chunkSize: 4,
      parallelism: 2,
    });
    assert.equal(dry.dryRun, true);
    assert.deepEqual(dry.counts, { update: 0, supersede: 0, ignore: 0, merge: 2 });
    assert.equal((await pending(scope)).length, 6, 'a dry run changes nothing');
    assert.deepEqual(await opsOf(scope.tenantId, scope.userId), []);

    const summary = await runConsolidationOnce(endpoint, {
      ...scope,
      dryRun: false,
      chunkSize: 4,
      parallelism: 2,
    });
    assert.equal(summary.tenantId, scope.tenantId);
    assert.equal(summary.userId, scope.userId);
    assert.equal(summary.runs, 1);
    assert.equal(summary.sources, 6);
    assert.equal(summary.policy, 'near-duplicate@0.97');
    assert.deepEqual(summary.counts, { update: 0, supersede: 0, ignore: 0, merge: 2 });
    assert.equal(summary.problems, 0);
    assert.equal(summary.decisions.length, 2);
    assert.equal((await pending(scope)).length, 0);
    await assertMerged(scope, entries);

    // A non-retryable LightmemError (an invalid scope) fails the run at once, with its code.
    const started = Date.now();
    await assert.rejects(
      runConsolidationOnce(endpoint, {
        tenantId: 'tenant-a',
        userId: 'not a valid id!',
        dryRun: true,
        chunkSize: 4,
        parallelism: 2,
      }),
      (error: unknown) => {
        assert.ok(error instanceof LightmemError);
        assert.equal(error.code, 'invalid_input');
        assert.equal(error.retryable, false);
        return true;
      },
    );
    assert.ok(Date.now() - started < 5_000, 'not retried');
  });

  it('an unreachable server: the trigger and the run-once client fail retryably', async () => {
    const nowhere = { address: '127.0.0.1:1', namespace, taskQueue };
    const wake = new TemporalConsolidationTrigger({ ...nowhere, entity: entity(), callTimeoutMs: 1_000 });
    const retryable = (code: string) => (error: unknown) => {
      assert.ok(error instanceof LightmemError, String(error));
      assert.equal(error.code, code);
      assert.equal(error.retryable, true);
      assert.ok(error.cause !== undefined, 'the Temporal error is the cause');
      return true;
    };
    try {
      const startedAt = Date.now();
      await assert.rejects(
        wake.notify([{ tenantId: 'tenant-a', userId: `nobody-${run}`, count: 1 }]),
        retryable('storage_unavailable'),
      );
      assert.ok(Date.now() - startedAt < 5_000, 'within the call timeout');
    } finally {
      await wake.close();
    }
    await assert.rejects(
      runConsolidationOnce(
        nowhere,
        {
          tenantId: 'tenant-a',
          userId: `nobody-${run}`,
          dryRun: true,
          chunkSize: 4,
          parallelism: 2,
        },
        { connectTimeoutMs: 1_000 },
      ),
      retryable('storage_unavailable'),
    );
  });

  it('SIGKILL of the worker mid-run: a new worker completes the run, every target decided exactly once', async (t) => {
    const scope = user('tenant-k', 'user-kill');
    const killQueue = `${taskQueue}-kill`;
    // Seven memories alike (>= 0.8) but none a near-duplicate: the six older ones are targets.
    const days = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
    const entries = await remember(
      scope,
      days.map((day, i) => ({
        text: `Frank wants the invoice reminders sent by email to the accounts team on ${day}`,
        hours: i,
      })),
    );
    const vectors = await embedder.embed(entries.map((entry) => entry.text));
    for (const a of vectors) {
      for (const b of vectors) {
        const cosine = a.reduce((sum, value, i) => sum + value * (b[i] ?? 0), 0);
        assert.ok(cosine >= 0.8 && (a === b || cosine < 0.97), `fixture similarity ${cosine}`);
      }
    }
    const targets = entries.slice(0, 6).map((entry) => entry.id);

    const llm = await startFakeOpenAiServer({
      responder: async (request, { signal }) => {
        await delay(900, undefined, { signal }).catch(() => undefined);
        const target =
          /\nT \[[^\]]+\] [^:]+: (.*)/.exec(`\n${request.messages[1]?.content ?? ''}`)?.[1] ?? '';
        return JSON.stringify({
          reason: 'The newer memories say the same; merged.',
          action: 'update',
          memory: `${target} (confirmed)`,
          by: null,
        });
      },
    });
    const processes: WorkerProcess[] = [];
    const spawnWorker = (identity: string): Promise<WorkerProcess> =>
      startWorkerProcess(
        {
          ...endpoint,
          taskQueue: killQueue,
          storeFile: files.store,
          logFile: files.log,
          ledgerFile: files.ledger,
          llmBaseUrl: llm.baseUrl,
          llmModel: 'fake-model',
          embedderId: embedder.id,
          identity,
        },
        processes,
      );

    const wake = trigger(entity({ chunkSize: 3, parallelism: 2, heartbeatTimeoutMs: 3_000 }), killQueue);
    try {
      const spawnedAt = Date.now();
      const firstWorker = await spawnWorker('worker-1');
      t.diagnostic(`worker-1 ready after ${Date.now() - spawnedAt} ms`);
      await wake.notify([{ ...scope, count: 7 }]);
      await until('the LLM asked mid-run', async () => llm.chatRequests().length >= 3);
      const opsBeforeKill = (await opsOf(scope.tenantId, scope.userId)).length;
      await firstWorker.kill();
      assert.ok(opsBeforeKill < targets.length, `killed mid-run (${opsBeforeKill} ops appended before)`);

      const killedAt = Date.now();
      await spawnWorker('worker-2');
      t.diagnostic(
        `killed worker-1 after ${opsBeforeKill} ops; worker-2 ready after ${Date.now() - killedAt} ms`,
      );
      await consolidated(scope, 60_000);
      t.diagnostic(
        `run completed ${Date.now() - killedAt} ms after the kill; ${llm.chatRequests().length} LLM requests`,
      );

      const ops = await opsOf(scope.tenantId, scope.userId);
      const perTarget = new Map<string, number>();
      for (const op of ops) {
        for (const id of op.targetIds) perTarget.set(id, (perTarget.get(id) ?? 0) + 1);
      }
      assert.deepEqual([...perTarget.keys()].sort(), [...targets].sort(), 'every target decided');
      for (const [id, times] of perTarget) assert.equal(times, 1, `target ${id} decided once`);
      assert.equal(new Set(ops.map((op) => op.opId)).size, ops.length, 'no op appended twice');
      for (const id of targets) {
        const old = await store.get(scope, id);
        assert.notEqual(old?.supersededBy, null, 'every target got its new version');
      }
      assert.ok(llm.chatRequests().length >= targets.length);
      const history = await client.workflow.getHandle(entityWorkflowId(scope)).fetchHistory();
      const retried = (history.events ?? []).filter(
        (event) => (event.activityTaskStartedEventAttributes?.attempt ?? 1) > 1,
      );
      assert.ok(retried.length >= 1, 'an activity of the killed worker was retried on the new one');
    } finally {
      await wake.close();
      await Promise.all(processes.map((worker) => worker.stop()));
      await llm.close();
    }
  });
});
