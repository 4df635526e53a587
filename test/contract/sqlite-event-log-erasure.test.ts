import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { eventDedupKey } from '../../services/core/model/keys.js';
import type {
  CompressedTurn,
  ConversationEvent,
  DeadLetter,
  TopicSegment,
} from '../../services/core/model/generated.js';
import { Topics, conversationKey, type TopicName } from '../../services/core/model/topics.js';
import type { AppendRecord, BatchHandler, EventLog, LogRecord } from '../../services/core/ports/event-log.js';
import { conversationStateKey, turnStateKey } from '../../services/stages/state-keys.js';
import { T0, makeTurn } from '../support/event-fixtures.js';
import { makeEntry, makeOp } from '../support/memory-fixtures.js';
import { silentLogger } from '../support/memory-logger.js';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function openLog(): SqliteEventLog {
  const dir = mkdtempSync(join(tmpdir(), 'lightmem-log-erasure-'));
  dirs.push(dir);
  return SqliteEventLog.open(join(dir, 'log.db'), {
    logger: silentLogger,
    clock: { now: () => Date.now() },
    pollIntervalMs: 10,
    retryBaseMs: 5,
    retryMaxMs: 40,
  });
}

const A = { tenantId: 'tenant-a', userId: 'user-1' };
const B = { tenantId: 'tenant-a', userId: 'user-2' };

function turn(
  i: number,
  who: { tenantId: string; userId: string },
  conversationId = 'conv-1',
): ConversationEvent {
  return makeTurn(i, { ...who, conversationId, turnId: `t${i}`, text: `${who.userId} says secret ${i}` });
}

function raw(event: ConversationEvent): AppendRecord<typeof Topics.raw> {
  return { key: conversationKey(event), value: event, dedupKey: eventDedupKey(event) };
}

function compressed(event: ConversationEvent): CompressedTurn {
  return {
    event,
    compressedText: event.text,
    originalTokens: 3,
    keptTokens: 3,
    keepRatio: 1,
    scorerVersion: 'none',
  };
}

function segment(event: ConversationEvent): TopicSegment {
  return {
    segmentId: `seg-${event.userId}-${event.turnId}`,
    tenantId: event.tenantId,
    userId: event.userId,
    agentId: null,
    conversationId: event.conversationId,
    sessionId: event.sessionId,
    turns: [],
    boundary: { reason: 'session_end', similarity: null, threshold: null, note: '' },
    endOfSession: true,
    segmenterVersion: 'v',
    scorerVersion: 'v',
  };
}

function deadLetter(fields: Partial<DeadLetter>): DeadLetter {
  return {
    stage: 'ingest',
    sourceTopic: 'test',
    sourceOffset: null,
    sourceLine: 1,
    key: 'k',
    errorCode: 'invalid_input',
    field: 'text',
    reason: 'bad',
    attempt: 1,
    payload: '{}',
    failedAt: 0,
    ...fields,
  };
}

async function readAll<T extends TopicName>(log: EventLog, topic: T): Promise<LogRecord<T>[]> {
  return log.read(topic, 0, 100_000);
}

async function waitFor(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** Writes two users' records to every topic, and stage state for both. */
async function seed(log: SqliteEventLog): Promise<void> {
  const events = [turn(1, A), turn(2, B), turn(3, A, 'conv-2'), turn(4, B)];
  await log.append(Topics.raw, events.map(raw));
  await log.append(
    Topics.compressed,
    events.map((e) => ({ key: conversationKey(e), value: compressed(e), dedupKey: eventDedupKey(e) })),
  );
  await log.append(
    Topics.segments,
    events.map((e) => ({ key: conversationKey(e), value: segment(e) })),
  );
  await log.append(Topics.memories, [
    { key: 'a', value: makeEntry({ ...A, text: 'user-1 secret fact' }) },
    { key: 'b', value: makeEntry({ ...B, text: 'user-2 fact' }) },
  ]);
  await log.append(Topics.memoryOps, [
    { key: 'a', value: makeOp({ ...A, opId: 'op-a', op: 'ignore', targetIds: ['m1'] }) },
    { key: 'b', value: makeOp({ ...B, opId: 'op-b', op: 'ignore', targetIds: ['m2'] }) },
  ]);
  await log.append(Topics.deadLetters, [
    // A stage's dead letter of user-1's segment (offset 0): found by its source record.
    {
      key: 'summarizer',
      value: deadLetter({
        stage: 'summarizer',
        sourceTopic: Topics.segments,
        sourceOffset: 0,
        payload: 'LLM said: user-1 secret',
      }),
    },
    // Bad input that named the user but no tenant (the tenant came with the request).
    { key: 'ingest', value: deadLetter({ payload: '{"userId": "user-1", "text": 42}' }) },
    // A truncated payload still names its tenant and user.
    {
      key: 'indexer',
      value: deadLetter({
        stage: 'indexer',
        payload: `{"tenantId":"tenant-a","userId":"user-1","text":"${'x'.repeat(50)}… (9 more characters not kept)`,
      }),
    },
    { key: 'ingest', value: deadLetter({ payload: '{"userId": "user-2", "text": 42}' }) },
    { key: 'ingest', value: deadLetter({ payload: 'not json at all' }) },
  ]);
}

describe('SqliteEventLog erasure', () => {
  it('removes every record of the user in every topic, keeps the others, and keeps usage right', async () => {
    const log = openLog();
    try {
      await seed(log);
      const before = await log.usage(Topics.raw);
      const erasure = await log.eraseUser(A.tenantId, A.userId, 1_000);
      assert.deepEqual(erasure.records, {
        [Topics.raw]: 2,
        [Topics.compressed]: 2,
        [Topics.segments]: 2,
        [Topics.memories]: 1,
        [Topics.memoryOps]: 1,
        [Topics.deadLetters]: 3,
      });
      for (const topic of Object.values(Topics)) {
        const text = JSON.stringify((await readAll(log, topic)).map((r) => r.value));
        assert.doesNotMatch(text, /user-1/, `${topic} holds nothing of user-1`);
      }
      assert.equal((await readAll(log, Topics.raw)).length, 2, "user-2's turns are still there");
      assert.equal((await readAll(log, Topics.deadLetters)).length, 2);
      const usage = await log.usage(Topics.raw);
      assert.equal(usage.records, before.records - 2);
      assert.ok(usage.bytes < before.bytes && usage.bytes > 0);
      assert.equal(await log.endOffset(Topics.raw), 4, 'offsets are never reused');

      // The idempotency keys went with the records: the same turn is new again (and gets a new offset).
      assert.equal((await log.append(Topics.raw, [raw(turn(1, A))])).appended, 1);
      assert.equal((await log.append(Topics.raw, [raw(turn(2, B))])).duplicates, 1);
      assert.equal((await readAll(log, Topics.raw)).at(-1)?.offset, 4);

      const again = await log.eraseUser(A.tenantId, A.userId, 2_000);
      assert.equal(again.records[Topics.raw], 1, 'the turn appended after the erasure');
      const third = await log.eraseUser(A.tenantId, A.userId, 3_000);
      assert.ok(Object.values(third.records).every((n) => n === 0));
    } finally {
      await log.close();
    }
  });

  it("removes the user's stage state in every group and prefix, and nobody else's", async () => {
    const log = openLog();
    try {
      // A consumer commits state through a batch; the keys are the stages' own.
      await log.append(Topics.raw, [raw(turn(1, A))]);
      const tricky = { tenantId: 'x', userId: 'tenant-a', conversationId: 'user-1' };
      const writes = [
        conversationStateKey('sensory', { ...A, conversationId: 'conv-1' }),
        conversationStateKey('stm', { ...A, conversationId: 'conv-2' }),
        turnStateKey('seen', { ...A, conversationId: 'conv-1', turnId: 't1' }),
        turnStateKey('seen-session_end', { ...A, conversationId: 'conv-1', turnId: 'end' }),
        conversationStateKey('sensory', { ...B, conversationId: 'conv-1' }),
        turnStateKey('seen', { ...B, conversationId: 'conv-1', turnId: 't1' }),
        // Another tenant's user whose ids spell tenant-a / user-1 further along the key.
        conversationStateKey('sensory', tricky),
        'plain-key',
      ];
      await consumeOnce(log, 'compressor', async () => ({
        records: [],
        state: writes.map((key) => ({ key, value: '1' })),
      }));
      const erasure = await log.eraseUser(A.tenantId, A.userId, 1_000);
      assert.deepEqual(erasure.state, { compressor: 4 });
      const left = await log.stateOf('compressor').keys('');
      assert.deepEqual(left.sort(), writes.slice(4).sort());
    } finally {
      await log.close();
    }
  });

  it('leaves a tombstone with the receipt once the erasure completes', async () => {
    const log = openLog();
    try {
      await log.eraseUser(A.tenantId, A.userId, 1_000);
      await log.eraseUser('tenant-b', 'user-9', 2_000);
      assert.deepEqual(await log.erasures(A.tenantId), [
        { ...A, erasedAt: 1_000, completedAt: null, receipt: null },
      ]);
      await log.completeErasure(A.tenantId, A.userId, '{"ok":true}', 1_500);
      assert.deepEqual(
        (await log.erasures()).map((t) => [t.tenantId, t.userId, t.completedAt, t.receipt]),
        [
          ['tenant-a', 'user-1', 1_500, '{"ok":true}'],
          ['tenant-b', 'user-9', null, null],
        ],
      );
    } finally {
      await log.close();
    }
  });

  it("takes a session end or flush of the user's made before the erasure as done; turns go in", async () => {
    const log = openLog();
    try {
      const erasedAt = T0 + 10_000;
      await log.eraseUser(A.tenantId, A.userId, erasedAt);
      const control = (kind: 'flush' | 'session_end', receivedAt: number) =>
        raw({ ...turn(1, A), kind, turnId: `${kind}@${receivedAt}`, text: '', receivedAt });
      assert.deepEqual(
        await log.append(Topics.raw, [control('flush', erasedAt - 1), control('session_end', erasedAt)]),
        {
          appended: 0,
          duplicates: 2,
          duplicateIndexes: [0, 1],
        },
      );
      const later = await log.append(Topics.raw, [control('flush', erasedAt + 1)]);
      assert.equal(later.appended, 1, 'a flush made after the erasure');
      assert.equal(
        (await log.append(Topics.raw, [raw({ ...turn(2, A), receivedAt: erasedAt - 1 })])).appended,
        1,
      );
      assert.equal(
        (await log.append(Topics.raw, [raw({ ...turn(3, B, 'c'), kind: 'flush', receivedAt: 0 })])).appended,
        1,
      );
    } finally {
      await log.close();
    }
  });

  it('a consumer neither skips nor re-reads records around erased ones, and passes a gap at the end', async () => {
    const log = openLog();
    try {
      // B A A B A A: the consumer reads two at a time, so batches straddle the gaps.
      const events = [turn(1, B), turn(2, A), turn(3, A), turn(4, B), turn(5, A), turn(6, A)];
      await log.append(Topics.raw, events.map(raw));
      await log.eraseUser(A.tenantId, A.userId, 1_000);
      const seen: number[] = [];
      await consumeOnce(
        log,
        'reader',
        async (records) => {
          seen.push(...records.map((r) => r.offset));
          return { records: [], state: [] };
        },
        { batchSize: 2, until: 6 },
      );
      assert.deepEqual(seen, [0, 3], 'each remaining record once');
      assert.equal(await log.committedOffset('reader', Topics.raw), 6, 'past the erased tail');
    } finally {
      await log.close();
    }
  });

  it('drops what a batch in flight during the erasure made of the user, and keeps the rest', async () => {
    const log = openLog();
    try {
      await log.append(Topics.raw, [raw(turn(1, A)), raw(turn(2, B))]);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let started!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      const handler: BatchHandler<typeof Topics.raw> = async (records) => {
        started();
        await released;
        return {
          records: records.map((r) => ({
            topic: Topics.compressed,
            key: r.key,
            value: compressed(r.value),
            dedupKey: eventDedupKey(r.value),
          })),
          state: records.map((r) => ({ key: conversationStateKey('sensory', r.value), value: 'buffer' })),
        };
      };
      const consuming = consumeOnce(log, 'compressor', handler, { until: 2, onStart: running });
      await running;
      await log.eraseUser(A.tenantId, A.userId, 1_000);
      release();
      await consuming;
      assert.deepEqual(
        (await readAll(log, Topics.compressed)).map((r) => r.value.event.userId),
        ['user-2'],
      );
      assert.deepEqual(await log.stateOf('compressor').keys(''), [
        conversationStateKey('sensory', turn(2, B)),
      ]);
    } finally {
      await log.close();
    }
  });
});

/** Runs one consumer of the raw topic until it has committed `until` (default: the end), then stops it. */
async function consumeOnce(
  log: EventLog,
  group: string,
  handler: BatchHandler<typeof Topics.raw>,
  options: { batchSize?: number; until?: number; onStart?: Promise<void> } = {},
): Promise<void> {
  const controller = new AbortController();
  const until = options.until ?? (await log.endOffset(Topics.raw));
  const running = log.consume(
    { group, topic: Topics.raw, signal: controller.signal, batchSize: options.batchSize ?? 256 },
    handler,
  );
  try {
    if (options.onStart !== undefined) await options.onStart;
    await waitFor(
      async () => (await log.committedOffset(group, Topics.raw)) >= until,
      `${group} at ${until}`,
    );
  } finally {
    controller.abort();
    await running;
  }
}
