import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import type { CompressedTurn, ConversationEvent } from '../../services/core/model/generated.js';
import { Topics, conversationKey } from '../../services/core/model/topics.js';
import type { Clock } from '../../services/core/ports/clock.js';
import type { LogRecord } from '../../services/core/ports/event-log.js';
import { makeTurn } from '../support/event-fixtures.js';
import { silentLogger } from '../support/memory-logger.js';

const clock: Clock = { now: () => Date.now() };
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lightmem-log-pruning-'));
  dirs.push(dir);
  return join(dir, 'log.db');
}

function openLog(file: string): SqliteEventLog {
  return SqliteEventLog.open(file, { logger: silentLogger, clock, pollIntervalMs: 10 });
}

function compressed(event: ConversationEvent): CompressedTurn {
  return {
    event,
    compressedText: event.text,
    originalTokens: 10,
    keptTokens: 10,
    keepRatio: 1,
    scorerVersion: 'test',
  };
}

/** The compressor and the segmenter, as the pipeline runs them (one group per stage, named after it). */
const consumers = [
  { group: 'compressor', topic: Topics.raw },
  { group: 'segmenter', topic: Topics.compressed },
];

/** Runs one group over what its topic holds now, committing batch by batch; returns the offsets it saw. */
async function consumeAll<T extends typeof Topics.raw | typeof Topics.compressed>(
  log: SqliteEventLog,
  group: string,
  topic: T,
  handle: (
    records: readonly LogRecord<T>[],
  ) => { topic: typeof Topics.compressed; value: CompressedTurn }[] = () => [],
  batchSize = 2,
): Promise<number[]> {
  const seen: number[] = [];
  const end = await log.endOffset(topic);
  const controller = new AbortController();
  await log.consume({ group, topic, batchSize, signal: controller.signal }, async (records) => {
    seen.push(...records.map((record) => record.offset));
    const out = handle(records).map((r) => ({ ...r, key: conversationKey(r.value.event) }));
    if ((records.at(-1)?.offset ?? 0) + 1 >= end) controller.abort();
    return { records: out, state: [] };
  });
  return seen;
}

async function appendTurns(log: SqliteEventLog, from: number, count: number): Promise<ConversationEvent[]> {
  const events = Array.from({ length: count }, (_, i) => makeTurn(from + i));
  await log.append(
    Topics.raw,
    events.map((event) => ({ key: conversationKey(event), value: event })),
  );
  return events;
}

describe('SqliteEventLog.pruneConsumed', () => {
  it('deletes the consumed records of intermediate topics; unconsumed ones and every raw record stay', async () => {
    const file = tempFile();
    const log = openLog(file);
    try {
      await appendTurns(log, 0, 6);
      await consumeAll(log, 'compressor', Topics.raw, (records) =>
        records.map((record) => ({ topic: Topics.compressed, value: compressed(record.value) })),
      );
      assert.equal(await log.endOffset(Topics.compressed), 6);
      // The segmenter has read the first 4 compressed turns only (one batch of 4, committed).
      const controller = new AbortController();
      await log.consume(
        { group: 'segmenter', topic: Topics.compressed, batchSize: 4, signal: controller.signal },
        async () => {
          controller.abort();
          return { records: [], state: [] };
        },
      );
      assert.equal(await log.committedOffset('segmenter', Topics.compressed), 4);

      const pruned = await log.pruneConsumed(consumers, { batchRecords: 3 });
      assert.equal(pruned.deleted, 4);
      assert.deepEqual(
        (await log.read(Topics.compressed, 0, 100)).map((r) => r.offset),
        [4, 5],
        'the records the segmenter has not committed stay',
      );
      assert.equal((await log.read(Topics.raw, 0, 100)).length, 6, 'the raw topic stays whole');
      const usage = await log.usage(Topics.compressed);
      assert.equal(usage.records, 2);
      assert.equal(usage.pruned, 4);
      // Nothing more to prune: a second pass deletes nothing.
      assert.equal((await log.pruneConsumed(consumers)).deleted, 0);
      // A topic whose reader never committed keeps everything.
      assert.equal(
        (await log.pruneConsumed([{ group: 'someone-new', topic: Topics.compressed }])).deleted,
        0,
      );
    } finally {
      await log.close();
    }
  });

  it('after a restart offsets keep growing and a consumer reads on from its committed offset', async () => {
    const file = tempFile();
    let log = openLog(file);
    await appendTurns(log, 0, 4);
    await consumeAll(log, 'compressor', Topics.raw, (records) =>
      records.map((record) => ({ topic: Topics.compressed, value: compressed(record.value) })),
    );
    assert.deepEqual(await consumeAll(log, 'segmenter', Topics.compressed), [0, 1, 2, 3]);
    assert.equal((await log.pruneConsumed(consumers)).deleted, 4);
    await log.close(); // a crash after pruning: nothing in memory survives

    log = openLog(file);
    try {
      assert.equal(await log.endOffset(Topics.compressed), 4, 'the end stays where it was');
      assert.equal(await log.committedOffset('segmenter', Topics.compressed), 4);
      await appendTurns(log, 4, 3);
      await consumeAll(log, 'compressor', Topics.raw, (records) =>
        records.map((record) => ({ topic: Topics.compressed, value: compressed(record.value) })),
      );
      assert.deepEqual(
        (await log.read(Topics.compressed, 0, 100)).map((r) => r.offset),
        [4, 5, 6],
        'new records get new offsets',
      );
      assert.deepEqual(await consumeAll(log, 'segmenter', Topics.compressed), [4, 5, 6]);
      assert.deepEqual(
        (await log.read(Topics.raw, 0, 100)).map((r) => r.offset),
        [0, 1, 2, 3, 4, 5, 6],
      );
    } finally {
      await log.close();
    }
  });

  it('a new file shrinks as records are pruned (incremental auto-vacuum)', async () => {
    const file = tempFile();
    const log = openLog(file);
    try {
      await appendTurns(log, 0, 400);
      const big = (value: ConversationEvent): CompressedTurn => ({
        ...compressed(value),
        compressedText: 'x'.repeat(4_000),
      });
      await consumeAll(
        log,
        'compressor',
        Topics.raw,
        (records) => records.map((record) => ({ topic: Topics.compressed, value: big(record.value) })),
        100,
      );
      await consumeAll(log, 'segmenter', Topics.compressed, () => [], 100);
      const pages = (): number => {
        const db = new Database(file, { readonly: true });
        try {
          return Number(db.pragma('page_count', { simple: true }));
        } finally {
          db.close();
        }
      };
      const before = pages();
      assert.equal((await log.pruneConsumed(consumers)).deleted, 400);
      const afterPruning = pages();
      assert.ok(afterPruning * 2 < before, `${before} pages before, ${afterPruning} after`);
    } finally {
      await log.close();
    }
  });
});
