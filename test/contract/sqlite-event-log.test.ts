import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import avro from 'avsc';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { LightmemError, StorageBusyError, UnavailableError } from '../../services/core/errors.js';
import { eventDedupKey } from '../../services/core/model/keys.js';
import { avroSchemas, type ConversationEvent } from '../../services/core/model/generated.js';
import { Topics, conversationKey } from '../../services/core/model/topics.js';
import type { Clock } from '../../services/core/ports/clock.js';
import type { AppendRecord, BatchHandler, EventLog } from '../../services/core/ports/event-log.js';
import { eventLogContract } from './event-log.contract.js';
import { makeTurn } from '../support/event-fixtures.js';
import { memoryLogger, silentLogger } from '../support/memory-logger.js';
import { collect, repoRoot } from '../support/cli.js';

const clock: Clock = { now: () => Date.now() };

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function tempFile(): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lightmem-event-log-'));
  tempDirs.push(dir);
  return { dir, file: join(dir, 'events.db') };
}

function openLog(file: string): SqliteEventLog {
  return SqliteEventLog.open(file, {
    logger: silentLogger,
    clock,
    pollIntervalMs: 10,
    retryBaseMs: 5,
    retryMaxMs: 40,
  });
}

eventLogContract('SqliteEventLog', async () => {
  const { dir, file } = tempFile();
  const log = openLog(file);
  return {
    log,
    close: async () => {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

function turn(i: number, overrides: Partial<ConversationEvent> = {}): ConversationEvent {
  return makeTurn(i, { zoneOffset: '+02:00', metadata: { channel: 'chat' }, ...overrides });
}

function toAppend(event: ConversationEvent, dedupKey?: string): AppendRecord<typeof Topics.raw> {
  return { key: conversationKey(event), value: event, dedupKey };
}

/** A copy of a record without some of its fields (as an older or a broken writer would produce it). */
function withoutFields(
  value: ConversationEvent,
  ...fields: (keyof ConversationEvent)[]
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(value).filter(([name]) => !fields.includes(name as keyof ConversationEvent)),
  );
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(5);
  }
}

/** A stage that passes every turn on to the compressed topic and counts them in its state. */
const countingCompressor: BatchHandler<typeof Topics.raw> = async (records, state) => ({
  records: records.map((r) => ({
    topic: Topics.compressed,
    key: r.key,
    value: {
      event: r.value,
      compressedText: r.value.text,
      originalTokens: 3,
      keptTokens: 3,
      keepRatio: 1,
      scorerVersion: 'none',
    },
  })),
  state: [{ key: 'count', value: String(Number((await state.get('count')) ?? '0') + records.length) }],
});

async function drain(log: EventLog, group: string, target: number): Promise<void> {
  const controller = new AbortController();
  const running = log.consume({ group, topic: Topics.raw, signal: controller.signal }, countingCompressor);
  try {
    await waitFor(
      async () => (await log.committedOffset(group, Topics.raw)) >= target,
      `${group} at ${target}`,
    );
  } finally {
    controller.abort();
    await running;
  }
}

describe('SqliteEventLog', () => {
  it('keeps records, offsets and state across a close and reopen', async () => {
    const { file } = tempFile();
    const first = openLog(file);
    await first.append(
      Topics.raw,
      [0, 1, 2].map((i) => toAppend(turn(i), `turn-${i}`)),
    );
    await drain(first, 'reopen-stage', 3);
    await first.close();

    const second = openLog(file);
    try {
      assert.equal(await second.endOffset(Topics.raw), 3);
      assert.equal(await second.endOffset(Topics.compressed), 3);
      assert.equal(await second.committedOffset('reopen-stage', Topics.raw), 3);
      assert.equal(await second.stateOf('reopen-stage').get('count'), '3');
      const records = await second.read(Topics.raw, 0, 10);
      assert.deepEqual(
        records.map((r) => [r.offset, r.value.turnId, r.value.zoneOffset, r.value.metadata['channel']]),
        [
          [0, 't0', '+02:00', 'chat'],
          [1, 't1', '+02:00', 'chat'],
          [2, 't2', '+02:00', 'chat'],
        ],
      );
      // Dedup keys survive too, and new records continue the offsets.
      assert.deepEqual(await second.append(Topics.raw, [toAppend(turn(1), 'turn-1')]), {
        appended: 0,
        duplicates: 1,
        duplicateIndexes: [0],
      });
      assert.deepEqual(await second.append(Topics.raw, [toAppend(turn(3), 'turn-3')]), {
        appended: 1,
        duplicates: 0,
        duplicateIndexes: [],
      });
      assert.equal((await second.read(Topics.raw, 3, 1))[0]?.offset, 3);
      // The consumer resumes where it stopped before the restart.
      await drain(second, 'reopen-stage', 4);
      assert.equal(await second.stateOf('reopen-stage').get('count'), '4');
      assert.equal(await second.endOffset(Topics.compressed), 4);
    } finally {
      await second.close();
    }
  });

  it('reads a record written with an older compatible writer schema through the current reader schema', async () => {
    const { file } = tempFile();
    const log = openLog(file);
    try {
      await log.append(Topics.raw, [toAppend(turn(0))]);

      // The v0 ConversationEvent had no zoneOffset and no metadata (both now have defaults).
      const current = avroSchemas.ConversationEvent as { fields: { name: string }[] } & Record<
        string,
        unknown
      >;
      const oldSchema = {
        ...current,
        fields: current.fields.filter((field) => field.name !== 'zoneOffset' && field.name !== 'metadata'),
      };
      const oldType = avro.Type.forSchema(oldSchema as avro.Schema);
      const fingerprint = oldType.fingerprint('sha256').toString('hex');
      const oldValue = withoutFields(turn(1, { text: 'written by lightmem 0.0' }), 'zoneOffset', 'metadata');
      const buffer = oldType.toBuffer(oldValue);

      const db = log.database;
      db.prepare('INSERT INTO writer_schemas (fingerprint, schema) VALUES (?, ?)').run(
        fingerprint,
        JSON.stringify(oldType.schema()),
      );
      db.prepare(
        'INSERT INTO records (topic, offset, key, value, schema_fp, dedup_key, appended_at) VALUES (?, ?, ?, ?, ?, NULL, ?)',
      ).run(Topics.raw, 1, 'tenant-a/conv-1', buffer, fingerprint, Date.now());
      db.prepare('UPDATE topic_ends SET next_offset = 2 WHERE topic = ?').run(Topics.raw);

      const records = await log.read(Topics.raw, 0, 10);
      assert.equal(records.length, 2);
      const old = records[1]!.value;
      assert.equal(old.text, 'written by lightmem 0.0');
      assert.equal(old.turnId, 't1');
      assert.equal(old.zoneOffset, '+00:00', 'default of the new field');
      assert.deepEqual({ ...old.metadata }, {});
      // The record written with the current schema is untouched.
      assert.equal(records[0]!.value.zoneOffset, '+02:00');

      // A reader that has never seen the old schema (another process) finds it in the file.
      const other = openLog(file);
      try {
        const [again] = await other.read(Topics.raw, 1, 1);
        assert.equal(again?.value.text, 'written by lightmem 0.0');
        assert.equal(again?.value.zoneOffset, '+00:00');
      } finally {
        await other.close();
      }
    } finally {
      await log.close();
    }
  });

  it('refuses a record that does not match the topic schema, naming the field, and appends nothing', async () => {
    const { file } = tempFile();
    const log = openLog(file);
    try {
      const withoutSpeaker = withoutFields(turn(0), 'speaker');
      await assert.rejects(
        () =>
          log.append(Topics.raw, [
            toAppend(turn(1)),
            toAppend(withoutSpeaker as unknown as ConversationEvent),
          ]),
        (error: unknown) => {
          assert.ok(error instanceof LightmemError, `expected a LightmemError, got ${String(error)}`);
          assert.equal(error.code, 'invalid_input');
          assert.equal(error.retryable, false);
          assert.equal(error.field, 'speaker');
          assert.match(error.message, /speaker/);
          return true;
        },
      );
      await assert.rejects(
        () =>
          log.append(Topics.compressed, [
            {
              key: 'k',
              value: {
                event: { ...turn(2), seq: 2.5 },
                compressedText: 'x',
                originalTokens: 1,
                keptTokens: 1,
                keepRatio: 1,
                scorerVersion: 'none',
              },
            },
          ]),
        (error: unknown) => error instanceof LightmemError && error.field === 'event.seq',
      );
      assert.equal(
        await log.endOffset(Topics.raw),
        0,
        'the valid record of the refused call was not appended',
      );
      assert.equal(await log.endOffset(Topics.compressed), 0);
    } finally {
      await log.close();
    }
  });

  it('dead-letters the input record when a stage produces output that does not match its schema', async () => {
    const { file } = tempFile();
    const log = openLog(file);
    try {
      await log.append(
        Topics.raw,
        [0, 1, 2].map((i) => toAppend(turn(i))),
      );
      const controller = new AbortController();
      const running = log.consume(
        { group: 'bad-output', topic: Topics.raw, signal: controller.signal },
        async (records) => ({
          records: records.map((r) => ({
            topic: Topics.compressed,
            key: r.key,
            value: {
              event: r.value,
              compressedText: r.value.text,
              // A stage bug on one record: a non-integer where the schema wants an int.
              originalTokens: r.value.turnId === 't1' ? 1.5 : 3,
              keptTokens: 3,
              keepRatio: 1,
              scorerVersion: 'none',
            },
          })),
          state: [],
        }),
      );
      let failure: unknown = undefined;
      const stopped = running.catch((error: unknown) => {
        failure = error;
      });
      try {
        await waitFor(
          async () => failure !== undefined || (await log.committedOffset('bad-output', Topics.raw)) >= 3,
          'the consumer to pass the bad record',
        );
      } finally {
        controller.abort();
        await stopped;
      }
      assert.equal(failure, undefined, `consume must not stop on a bad record: ${String(failure)}`);
      assert.deepEqual(
        (await log.read(Topics.compressed, 0, 10)).map((r) => r.value.event.turnId),
        ['t0', 't2'],
      );
      const deadLetters = await log.read(Topics.deadLetters, 0, 10);
      assert.equal(deadLetters.length, 1);
      assert.equal(deadLetters[0]?.value.sourceOffset, 1);
      assert.equal(deadLetters[0]?.value.errorCode, 'invalid_input');
      assert.equal(deadLetters[0]?.value.field, 'originalTokens');
    } finally {
      await log.close();
    }
  });

  it('a waiting consumer wakes on an in-process append and stops on abort without waiting for its poll or backoff', async () => {
    const { file } = tempFile();
    const log = SqliteEventLog.open(file, {
      logger: silentLogger,
      clock,
      pollIntervalMs: 60_000,
      retryBaseMs: 60_000,
    });
    try {
      const controller = new AbortController();
      const running = log.consume(
        { group: 'slow-poll', topic: Topics.raw, signal: controller.signal },
        async () => ({ records: [], state: [] }),
      );
      await log.append(Topics.raw, [toAppend(turn(0))]);
      await waitFor(
        async () => (await log.committedOffset('slow-poll', Topics.raw)) >= 1,
        'the append',
        5000,
      );
      const abortedAt = Date.now();
      controller.abort();
      await running;
      assert.ok(Date.now() - abortedAt < 1000, `stopped after ${Date.now() - abortedAt} ms`);

      // Aborted in the middle of a one-minute retry backoff.
      const retrying = new AbortController();
      let calls = 0;
      const failing = log.consume(
        { group: 'slow-retry', topic: Topics.raw, signal: retrying.signal },
        async () => {
          calls++;
          throw new UnavailableError('down for a while');
        },
      );
      await waitFor(async () => calls >= 1, 'the first failure', 5000);
      const retryAbortedAt = Date.now();
      retrying.abort();
      await failing;
      assert.ok(Date.now() - retryAbortedAt < 1000, `stopped after ${Date.now() - retryAbortedAt} ms`);
      assert.equal(calls, 1);
    } finally {
      await log.close();
    }
  });

  it('two logs on the same file (two processes) see each other’s appends', async () => {
    const { file } = tempFile();
    const a = openLog(file);
    const b = openLog(file);
    try {
      await a.append(Topics.raw, [toAppend(turn(0)), toAppend(turn(1))]);
      assert.equal(await b.endOffset(Topics.raw), 2);
      assert.deepEqual(
        (await b.read(Topics.raw, 0, 10)).map((r) => r.value.turnId),
        ['t0', 't1'],
      );

      // Appends from both continue one sequence of offsets; dedup keys are shared.
      await b.append(Topics.raw, [toAppend(turn(2), 'turn-2')]);
      assert.deepEqual(await a.append(Topics.raw, [toAppend(turn(2), 'turn-2')]), {
        appended: 0,
        duplicates: 1,
        duplicateIndexes: [0],
      });
      await a.append(Topics.raw, [toAppend(turn(3))]);
      assert.deepEqual(
        (await b.read(Topics.raw, 0, 10)).map((r) => [r.offset, r.value.turnId]),
        [
          [0, 't0'],
          [1, 't1'],
          [2, 't2'],
          [3, 't3'],
        ],
      );

      // A consumer in one process picks up what the other appends while it waits (by polling).
      const controller = new AbortController();
      const seen: string[] = [];
      const running = b.consume(
        { group: 'cross-process', topic: Topics.raw, signal: controller.signal },
        async (records) => {
          seen.push(...records.map((r) => r.value.turnId));
          return { records: [], state: [{ key: 'last', value: records.at(-1)?.value.turnId ?? '' }] };
        },
      );
      try {
        await waitFor(async () => (await a.committedOffset('cross-process', Topics.raw)) >= 4, 'first four');
        await a.append(Topics.raw, [toAppend(turn(4))]);
        await waitFor(
          async () => (await a.committedOffset('cross-process', Topics.raw)) >= 5,
          'the record from a',
        );
      } finally {
        controller.abort();
        await running;
      }
      assert.deepEqual(seen, ['t0', 't1', 't2', 't3', 't4']);
      assert.equal(await a.stateOf('cross-process').get('last'), 't4');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('three processes appending while a consumer commits: every write goes through (contention waits, never fails)', async () => {
    const { file } = tempFile();
    const log = openLog(file);
    const writers = 3;
    const batches = 150;
    const size = 4;
    try {
      // The consumer commits output + state + offset while the other processes append.
      const controller = new AbortController();
      const consuming = log.consume(
        { group: 'contended', topic: Topics.raw, signal: controller.signal, batchSize: 7 },
        countingCompressor,
      );
      const results = await Promise.all(
        Array.from({ length: writers }, (_, writer) =>
          collect(
            spawn(
              process.execPath,
              [
                '--import',
                'tsx',
                join(repoRoot, 'test/support/append-hammer.ts'),
                file,
                `w${writer}`,
                String(batches),
                String(size),
              ],
              { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
            ),
          ),
        ),
      );
      const total = writers * batches * size;
      try {
        for (const result of results) {
          assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
          assert.deepEqual(JSON.parse(result.stdout), { appended: batches * size });
        }
        await waitFor(
          async () => (await log.committedOffset('contended', Topics.raw)) >= total,
          'the consumer',
          60_000,
        );
      } finally {
        controller.abort();
        await consuming;
      }
      assert.equal(await log.endOffset(Topics.raw), total);
      assert.equal(await log.endOffset(Topics.compressed), total);
      assert.equal(await log.stateOf('contended').get('count'), String(total));
    } finally {
      await log.close();
    }
  });

  it('a commit that meets another process holding the write lock past the busy timeout is retried, not fatal', async () => {
    const { file } = tempFile();
    const logger = memoryLogger();
    const log = SqliteEventLog.open(file, {
      logger,
      clock,
      pollIntervalMs: 10,
      retryBaseMs: 20,
      retryMaxMs: 40,
      busyTimeoutMs: 20,
    });
    const other = new Database(file);
    try {
      await log.append(Topics.raw, [toAppend(turn(0)), toAppend(turn(1))]);
      // Another process takes the write lock and keeps it for 300 ms.
      other.exec('BEGIN IMMEDIATE');
      const release = delay(300).then(() => other.exec('COMMIT'));
      const controller = new AbortController();
      const consuming = log.consume(
        { group: 'blocked', topic: Topics.raw, signal: controller.signal },
        async (records) => ({
          records: [],
          state: [{ key: 'last', value: records.at(-1)?.value.turnId ?? '' }],
        }),
      );
      try {
        await release;
        await waitFor(async () => (await log.committedOffset('blocked', Topics.raw)) >= 2, 'the commit');
      } finally {
        controller.abort();
        await consuming;
      }
      assert.equal(await log.stateOf('blocked').get('last'), 't1');
      const retries = logger.entries.filter((entry) => entry.message === 'commit failed, retrying');
      assert.ok(retries.length > 0, 'the busy commit was retried');
      assert.match(String(retries[0]?.fields?.['error']), /locked by another process/);
      // And an append that meets the lock fails with a retryable, typed error that keeps SQLite's.
      other.exec('BEGIN IMMEDIATE');
      const failed = await log.append(Topics.raw, [toAppend(turn(2))]).then(
        () => null,
        (error: unknown) => error,
      );
      other.exec('COMMIT');
      assert.ok(failed instanceof StorageBusyError, String(failed));
      assert.equal(failed.retryable, true);
      assert.match(String((failed.cause as { code?: string }).code), /^SQLITE_BUSY/);
    } finally {
      other.close();
      await log.close();
    }
  });

  it('keeps dead letters within their size cap and retention, oldest deleted first', async () => {
    const { file } = tempFile();
    let now = Date.UTC(2026, 0, 1);
    const log = SqliteEventLog.open(file, {
      logger: silentLogger,
      clock: { now: () => now },
      retention: { [Topics.deadLetters]: { maxBytes: 20_000, maxAgeMs: 3_600_000 } },
    });
    const letter = (i: number) => ({
      key: 'ingest',
      value: {
        stage: 'ingest',
        sourceTopic: 'http',
        sourceOffset: null,
        sourceLine: null,
        key: `events[${i}]`,
        errorCode: 'invalid_input',
        field: 'events.0.role',
        reason: 'role must be one of …',
        attempt: 1,
        payload: 'x'.repeat(900),
        failedAt: now,
      },
    });
    try {
      for (let batch = 0; batch < 10; batch++) {
        await log.append(
          Topics.deadLetters,
          Array.from({ length: 20 }, (_, i) => letter(batch * 20 + i)),
        );
        const usage = await log.usage(Topics.deadLetters);
        assert.ok(usage.bytes <= 20_000, `${usage.bytes} bytes kept after batch ${batch}`);
      }
      const usage = await log.usage(Topics.deadLetters);
      assert.ok(usage.records > 0 && usage.records < 200);
      assert.equal(usage.records + usage.pruned, 200);
      // Offsets keep counting; what is kept is the newest, readable from its first offset.
      assert.equal(await log.endOffset(Topics.deadLetters), 200);
      const kept = await log.read(Topics.deadLetters, 0, 1000);
      assert.equal(kept.length, usage.records);
      assert.equal(kept.at(-1)?.value.key, 'events[199]');
      assert.equal(kept[0]?.offset, 200 - usage.records);
      // Past the retention period, the next append (or the periodic check) deletes the old ones.
      now += 2 * 3_600_000;
      log.enforceRetention();
      assert.equal((await log.usage(Topics.deadLetters)).records, 0);
      await log.append(Topics.deadLetters, [letter(200)]);
      assert.equal((await log.usage(Topics.deadLetters)).records, 1);
    } finally {
      await log.close();
    }
  });

  it('opens a log written by version 1 (ids joined with "/") and migrates its keys', async () => {
    const { file } = tempFile();
    copyFileSync(join(repoRoot, 'test/fixtures/v1-data-dir/log.db'), file);
    const log = openLog(file);
    const fixtureTurn = (tenantId: string, userId: string, conversationId: string, turnId: string) =>
      toAppendKeyed(turn(Number(turnId), { tenantId, userId, conversationId, sessionId: 's1', turnId }));
    try {
      // Version 1 dropped turn 1 of acme / x / c/d as a duplicate of acme/x / c / d: now it is new…
      assert.deepEqual(await log.append(Topics.raw, [fixtureTurn('acme', 'x', 'c/d', '1')]), {
        appended: 1,
        duplicates: 0,
        duplicateIndexes: [],
      });
      // …while the turns version 1 stored, with '/' in their ids, are still recognised.
      assert.deepEqual(
        await log.append(Topics.raw, [
          fixtureTurn('acme/x', 'c', 'd', '1'),
          fixtureTurn('acme/eu', 'u/1', 'chat/7', '3'),
        ]),
        { appended: 0, duplicates: 2, duplicateIndexes: [0, 1] },
      );
      const db = new Database(file, { readonly: true });
      try {
        assert.equal(db.pragma('user_version', { simple: true }), 5);
        // Migration 5 added the trace context: the records of before carry none.
        assert.equal(
          db.prepare('SELECT COUNT(*) FROM records WHERE trace_context IS NOT NULL').pluck().get(),
          0,
        );
        // Migration 4 filled in the owner of every record written before it (erasure finds them by it).
        const owners = db
          .prepare(`SELECT tenant_id, user_id, COUNT(*) AS n FROM records WHERE topic = ? GROUP BY 1, 2`)
          .all(Topics.raw) as { tenant_id: string | null; user_id: string | null; n: number }[];
        assert.ok(owners.length > 0);
        for (const owner of owners) assert.ok(owner.tenant_id !== null && owner.user_id !== null);
        assert.ok(owners.some((o) => o.tenant_id === 'acme/eu' && o.user_id === 'u/1'));
        // Session ends have keys of their own namespace (a turn with such an id cannot pre-empt them).
        const ends = db
          .prepare(`SELECT dedup_key FROM records WHERE topic = ? AND dedup_key LIKE '%session-end%'`)
          .all(Topics.raw) as { dedup_key: string }[];
        assert.ok(ends.length > 0);
        for (const { dedup_key: key } of ends) assert.match(key, /\/session_end$/);
      } finally {
        db.close();
      }
    } finally {
      await log.close();
    }
  });
});

function toAppendKeyed(event: ConversationEvent): AppendRecord<typeof Topics.raw> {
  return { key: conversationKey(event), value: event, dedupKey: eventDedupKey(event) };
}
