import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import avro from 'avsc';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { LightmemError, UnavailableError } from '../../services/core/errors.js';
import { avroSchemas, type ConversationEvent } from '../../services/core/model/generated.js';
import { Topics, conversationKey } from '../../services/core/model/topics.js';
import type { Clock } from '../../services/core/ports/clock.js';
import type { AppendRecord, EventLog } from '../../services/core/ports/event-log.js';
import { eventLogContract } from './event-log.contract.js';
import { makeTurn } from '../support/event-fixtures.js';
import { silentLogger } from '../support/memory-logger.js';

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

async function drain(log: EventLog, group: string, target: number): Promise<void> {
  const controller = new AbortController();
  const running = log.consume(
    { group, topic: Topics.raw, signal: controller.signal },
    async (records, state) => {
      const count = Number((await state.get('count')) ?? '0') + records.length;
      return {
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
        state: [{ key: 'count', value: String(count) }],
      };
    },
  );
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
      });
      assert.deepEqual(await second.append(Topics.raw, [toAppend(turn(3), 'turn-3')]), {
        appended: 1,
        duplicates: 0,
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
});
