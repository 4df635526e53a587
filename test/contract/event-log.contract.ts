import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { InvalidInputError, UnavailableError } from '../../services/core/errors.js';
import type { CompressedTurn, ConversationEvent } from '../../services/core/model/generated.js';
import { Topics, conversationKey, type TopicName } from '../../services/core/model/topics.js';
import type {
  AppendRecord,
  BatchHandler,
  EventLog,
  LogRecord,
  OutputRecord,
  StageOutput,
} from '../../services/core/ports/event-log.js';
import { makeTurn } from '../support/event-fixtures.js';
import { conversationStateKey } from '../../services/stages/state-keys.js';

/**
 * Behaviour every EventLog adapter must have. Uses the port only, so the SQLite adapter and the Kafka one
 * run the very same cases. `open` must return an empty log each time (a fresh file, or fresh topics).
 * Every test uses its own consumer group names and waits on conditions, never on fixed sleeps.
 */
export interface EventLogTraits {
  /** append() drops a record whose dedupKey is already in the topic (the embedded log; Kafka leaves it to the stage). */
  readonly dedupOnAppend: boolean;
  /** Offsets of records written by a consumer's commit are 0, 1, 2… (Kafka transaction markers take positions). */
  readonly denseOutputOffsets: boolean;
}

export function eventLogContract(
  name: string,
  open: () => Promise<{ log: EventLog; close(): Promise<void> }>,
  traits: EventLogTraits = { dedupOnAppend: true, denseOutputOffsets: true },
): void {
  describe(`EventLog contract: ${name}`, () => {
    let opened: { log: EventLog; close(): Promise<void> };
    let log: EventLog;
    let groupCounter = 0;
    /** A consumer group name used by no other test (also across runs against a shared broker). */
    const group = (label: string): string =>
      `contract-${label}-${process.pid}-${Date.now()}-${++groupCounter}`;

    beforeEach(async () => {
      opened = await open();
      log = opened.log;
    });
    afterEach(async () => {
      await opened.close();
    });

    const committedAt = (g: string, topic: TopicName, offset: number) => async (): Promise<boolean> =>
      (await log.committedOffset(g, topic)) >= offset;

    /** Runs a consumer until `until` holds, then aborts it and waits for it to stop. */
    async function consumeUntil<T extends TopicName>(
      options: { group: string; topic: T; batchSize?: number },
      handler: BatchHandler<T>,
      until: () => Promise<boolean>,
    ): Promise<void> {
      const controller = new AbortController();
      let settled = false;
      let failure: unknown = undefined;
      const running = log.consume({ ...options, signal: controller.signal }, handler).then(
        () => {
          settled = true;
        },
        (error: unknown) => {
          settled = true;
          failure = error ?? new Error('consume rejected');
        },
      );
      try {
        await waitFor(
          async () => settled || (await until()),
          `consumer ${options.group} to reach its condition`,
        );
      } finally {
        controller.abort();
        await running;
      }
      if (failure !== undefined)
        throw failure instanceof Error ? failure : new Error('consume rejected', { cause: failure });
      assert.ok(await until(), `consumer ${options.group} stopped before its condition held`);
    }

    describe('append and read', () => {
      it('keeps the trace context of each record, appended and committed by a stage', async () => {
        const traced = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        const events = [0, 1].map((i) => turn(i, { conversationId: `trace-${i}` }));
        await log.append(Topics.raw, [
          { ...toAppend(events[0] as ConversationEvent), traceContext: traced },
          toAppend(events[1] as ConversationEvent),
        ]);
        const read = await log.read(Topics.raw, 0, 10);
        assert.deepEqual(
          read.map((r) => r.traceContext),
          [traced, undefined],
        );
        // A stage's outputs carry the context they are given (the batch policy gives its span's).
        const stageContext = '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01';
        const g = group('trace');
        await consumeUntil(
          { group: g, topic: Topics.raw },
          async (records) => ({
            records: records.map((r) => ({
              topic: Topics.compressed,
              key: r.key,
              value: compressedOf(plain(r.value)),
              ...(r.traceContext === undefined ? {} : { traceContext: stageContext }),
            })),
            state: [],
          }),
          committedAt(g, Topics.raw, 2),
        );
        const outputs = await log.read(Topics.compressed, 0, 100);
        const contextOf = new Map(outputs.map((r) => [r.value.event.conversationId, r.traceContext]));
        assert.equal(contextOf.get('trace-0'), stageContext);
        assert.equal(contextOf.get('trace-1'), undefined);
      });

      it('a new log is empty', async () => {
        assert.equal(await log.endOffset(Topics.raw), 0);
        assert.deepEqual(await log.read(Topics.raw, 0, 10), []);
        assert.equal(await log.committedOffset(group('empty'), Topics.raw), 0);
      });

      it('appends in order with offsets from 0 and reads them back', async () => {
        const events = [0, 1, 2, 3, 4].map((i) =>
          turn(i, { conversationId: i % 2 === 0 ? 'conv-even' : 'conv-odd' }),
        );
        const result = await log.append(Topics.raw, events.map(toAppend));
        assert.deepEqual(result, { appended: 5, duplicates: 0, duplicateIndexes: [] });

        const records = await log.read(Topics.raw, 0, 100);
        assert.deepEqual(
          records.map((r) => r.offset),
          [0, 1, 2, 3, 4],
        );
        assert.deepEqual(
          records.map((r) => r.key),
          events.map((e) => conversationKey(e)),
        );
        assert.deepEqual(
          records.map((r) => plain(r.value)),
          events,
        );
        for (const record of records) {
          assert.equal(record.topic, Topics.raw);
          assert.equal(typeof record.appendedAt, 'number');
        }

        // A window in the middle, and a limit.
        const window = await log.read(Topics.raw, 2, 2);
        assert.deepEqual(
          window.map((r) => r.value.turnId),
          ['t2', 't3'],
        );
        assert.deepEqual(await log.read(Topics.raw, 5, 10), []);
      });

      it('endOffset is the number of records ever appended, per topic', async () => {
        await log.append(Topics.raw, [turn(0), turn(1)].map(toAppend));
        assert.equal(await log.endOffset(Topics.raw), 2);
        await log.append(Topics.raw, [turn(2)].map(toAppend));
        assert.equal(await log.endOffset(Topics.raw), 3);
        // Other topics are independent.
        assert.equal(await log.endOffset(Topics.compressed), 0);
        await log.append(Topics.compressed, [compressedRecord(turn(9))]);
        assert.equal(await log.endOffset(Topics.compressed), 1);
        assert.equal(await log.endOffset(Topics.raw), 3);
        const [first] = await log.read(Topics.compressed, 0, 1);
        assert.equal(first?.offset, 0);
      });

      it('appends of the same key from several calls keep their order', async () => {
        for (let i = 0; i < 6; i++) await log.append(Topics.raw, [toAppend(turn(i))]);
        const records = await log.read(Topics.raw, 0, 100);
        assert.deepEqual(
          records.map((r) => r.value.seq),
          [0, 1, 2, 3, 4, 5],
        );
        assert.deepEqual(
          records.map((r) => r.offset),
          [0, 1, 2, 3, 4, 5],
        );
      });
    });

    describe('dedupKey', () => {
      it(
        'a second append of the same dedupKey is a no-op reported as a duplicate',
        { skip: traits.dedupOnAppend ? false : "dedup is the consuming stage's job on this log" },
        async () => {
          const first = await log.append(Topics.raw, [{ ...toAppend(turn(0)), dedupKey: 'turn-0' }]);
          assert.deepEqual(first, { appended: 1, duplicates: 0, duplicateIndexes: [] });

          const again = await log.append(Topics.raw, [
            { ...toAppend(turn(0, { text: 'resent' })), dedupKey: 'turn-0' },
          ]);
          assert.deepEqual(again, { appended: 0, duplicates: 1, duplicateIndexes: [0] });
          assert.equal(await log.endOffset(Topics.raw), 1);

          // A mixed call: the new key is appended, the known one and a repeat inside the call are not.
          const mixed = await log.append(Topics.raw, [
            { ...toAppend(turn(0)), dedupKey: 'turn-0' },
            { ...toAppend(turn(1)), dedupKey: 'turn-1' },
            { ...toAppend(turn(1)), dedupKey: 'turn-1' },
            toAppend(turn(2)),
          ]);
          assert.deepEqual(mixed, { appended: 2, duplicates: 2, duplicateIndexes: [0, 2] });
          const records = await log.read(Topics.raw, 0, 100);
          assert.deepEqual(
            records.map((r) => [r.offset, r.value.turnId, r.value.text]),
            [
              [0, 't0', 'message number 0'],
              [1, 't1', 'message number 1'],
              [2, 't2', 'message number 2'],
            ],
          );

          // Dedup keys are per topic.
          const otherTopic = await log.append(Topics.compressed, [
            { ...compressedRecord(turn(0)), dedupKey: 'turn-0' },
          ]);
          assert.deepEqual(otherTopic, { appended: 1, duplicates: 0, duplicateIndexes: [] });
        },
      );
    });

    describe('consume', () => {
      it('delivers every record once, in order per key, and commits the offset', async () => {
        const g = group('order');
        const events = [0, 1, 2, 3, 4, 5].map((i) =>
          turn(i, { conversationId: i % 2 === 0 ? 'conv-a' : 'conv-b', seq: Math.floor(i / 2) }),
        );
        await log.append(Topics.raw, events.map(toAppend));

        const delivered: LogRecord<typeof Topics.raw>[] = [];
        await consumeUntil(
          { group: g, topic: Topics.raw, batchSize: 2 },
          async (records) => {
            delivered.push(...records);
            return { records: [], state: [] };
          },
          committedAt(g, Topics.raw, 6),
        );

        assert.equal(await log.committedOffset(g, Topics.raw), 6);
        assert.deepEqual(
          [...delivered.map((r) => r.offset)].sort((a, b) => a - b),
          [0, 1, 2, 3, 4, 5],
          'each record exactly once',
        );
        for (const key of ['tenant-a/conv-a', 'tenant-a/conv-b']) {
          assert.deepEqual(
            delivered.filter((r) => r.key === key).map((r) => r.value.seq),
            [0, 1, 2],
            `order of ${key}`,
          );
        }
        // A group that has never consumed is independent.
        assert.equal(await log.committedOffset(group('other'), Topics.raw), 0);
      });

      it('a restarted consumer resumes from the committed offset', async () => {
        const g = group('resume');
        await log.append(
          Topics.raw,
          [0, 1, 2].map((i) => toAppend(turn(i))),
        );
        await consumeUntil(
          { group: g, topic: Topics.raw },
          async () => ({ records: [], state: [] }),
          committedAt(g, Topics.raw, 3),
        );

        await log.append(
          Topics.raw,
          [3, 4].map((i) => toAppend(turn(i))),
        );
        const second: number[] = [];
        await consumeUntil(
          { group: g, topic: Topics.raw },
          async (records) => {
            second.push(...records.map((r) => r.offset));
            return { records: [], state: [] };
          },
          committedAt(g, Topics.raw, 5),
        );
        assert.deepEqual(second, [3, 4]);
      });

      it('wakes up for records appended while it waits', async () => {
        const g = group('wake');
        const controller = new AbortController();
        const seen: string[] = [];
        const running = log.consume(
          { group: g, topic: Topics.raw, signal: controller.signal },
          async (records) => {
            seen.push(...records.map((r) => r.value.turnId));
            return { records: [], state: [] };
          },
        );
        try {
          await log.append(Topics.raw, [toAppend(turn(0))]);
          await waitFor(async () => (await log.committedOffset(g, Topics.raw)) >= 1, 'first record');
          await log.append(Topics.raw, [toAppend(turn(1))]);
          await waitFor(async () => (await log.committedOffset(g, Topics.raw)) >= 2, 'second record');
        } finally {
          controller.abort();
          await running;
        }
        assert.deepEqual(seen, ['t0', 't1']);
      });
    });

    describe('atomic commit', () => {
      it('output records, state and offset of a batch are committed together; a crash leaves nothing partial', async () => {
        const g = group('atomic');
        const events = [0, 1, 2, 3].map((i) => turn(i));
        await log.append(Topics.raw, events.map(toAppend));

        const controller = new AbortController();
        let calls = 0;
        let firstBatchEnd = -1;
        const crashed = log.consume(
          { group: g, topic: Topics.raw, signal: controller.signal, batchSize: 2 },
          async (records) => {
            calls++;
            if (calls === 2) {
              // The process dies while handling the second batch: its work must not show up anywhere.
              controller.abort();
              throw new Error('process killed mid-batch');
            }
            firstBatchEnd = (records.at(-1)?.offset ?? -1) + 1;
            return passThroughOutput(records);
          },
        );
        await waitFor(async () => calls >= 2, 'the crash');
        await crashed.catch(() => undefined);

        assert.ok(firstBatchEnd >= 1 && firstBatchEnd < 4, `first batch ended at ${firstBatchEnd}`);
        assert.equal(
          await log.committedOffset(g, Topics.raw),
          firstBatchEnd,
          'offset stays after the last good batch',
        );
        const outputAfterCrash = await log.read(Topics.compressed, 0, 100);
        assert.deepEqual(
          outputAfterCrash.map((r) => r.value.event.turnId),
          events.slice(0, firstBatchEnd).map((e) => e.turnId),
          'only the committed batch produced output',
        );
        assert.equal(await log.stateOf(g).get('last-turn'), `t${firstBatchEnd - 1}`);
        assert.equal(await log.stateOf(g).get(`done/t${firstBatchEnd}`), undefined);

        // After the restart the rest is processed exactly once more: no record lost, none duplicated.
        await consumeUntil(
          { group: g, topic: Topics.raw, batchSize: 2 },
          async (records) => passThroughOutput(records),
          committedAt(g, Topics.raw, 4),
        );
        const output = await log.read(Topics.compressed, 0, 100);
        assert.deepEqual(
          output.map((r) => r.value.event.turnId),
          ['t0', 't1', 't2', 't3'],
        );
        assert.equal(await log.stateOf(g).get('last-turn'), 't3');
        assert.deepEqual((await log.stateOf(g).keys('done/')).sort(), [
          'done/t0',
          'done/t1',
          'done/t2',
          'done/t3',
        ]);
      });
    });

    describe('failures', () => {
      it('a retryable error is retried, then the batch succeeds', async () => {
        const g = group('retry');
        await log.append(
          Topics.raw,
          [0, 1, 2].map((i) => toAppend(turn(i))),
        );
        const attempts: number[][] = [];
        await consumeUntil(
          { group: g, topic: Topics.raw },
          async (records) => {
            attempts.push(records.map((r) => r.offset));
            if (attempts.length <= 2) throw new UnavailableError('store is restarting');
            return passThroughOutput(records);
          },
          committedAt(g, Topics.raw, 3),
        );
        assert.ok(attempts.length >= 3, `handler ran ${attempts.length} times`);
        // The failed batches were delivered again from the same offset.
        assert.equal(attempts[0]?.[0], 0);
        assert.equal(attempts[1]?.[0], 0);
        assert.equal(attempts[2]?.[0], 0);
        const output = await log.read(Topics.compressed, 0, 100);
        assert.deepEqual(
          output.map((r) => r.value.event.turnId),
          ['t0', 't1', 't2'],
        );
        assert.equal(await log.endOffset(Topics.deadLetters), 0, 'nothing dead-lettered');
      });

      it('a non-retryable error on one record dead-letters exactly that record; the others are processed', async () => {
        const g = group('poison');
        const events = [0, 1, 2, 3].map((i) => turn(i, i === 2 ? { text: 'POISON' } : {}));
        await log.append(Topics.raw, events.map(toAppend));

        await consumeUntil(
          { group: g, topic: Topics.raw, batchSize: 10 },
          async (records) => {
            if (records.some((r) => r.value.text === 'POISON')) {
              throw new InvalidInputError('text is poisoned', 'text');
            }
            return passThroughOutput(records);
          },
          committedAt(g, Topics.raw, 4),
        );

        const output = await log.read(Topics.compressed, 0, 100);
        assert.deepEqual(
          output.map((r) => r.value.event.turnId),
          ['t0', 't1', 't3'],
        );
        const deadLetters = await log.read(Topics.deadLetters, 0, 100);
        assert.equal(deadLetters.length, 1);
        const dead = deadLetters[0]!.value;
        assert.equal(dead.stage, g);
        assert.equal(dead.sourceTopic, Topics.raw);
        assert.equal(dead.sourceOffset, 2);
        assert.equal(dead.errorCode, 'invalid_input');
        assert.equal(dead.field, 'text');
        assert.match(dead.reason, /text is poisoned/);
        assert.ok(dead.attempt >= 1);
        assert.match(dead.payload, /POISON/);
        assert.equal(await log.committedOffset(g, Topics.raw), 4);
      });
    });

    describe('state', () => {
      it('state written by one batch is visible to the next and through stateOf(group)', async () => {
        const g = group('state');
        await log.append(
          Topics.raw,
          [0, 1, 2].map((i) => toAppend(turn(i))),
        );

        let processed = 0;
        // What each batch read, beside what the batches before it had written.
        const seen: { read: string | undefined; expected: string | undefined }[] = [];
        await consumeUntil(
          { group: g, topic: Topics.raw, batchSize: 1 },
          async (records, state) => {
            seen.push({
              read: await state.get('count'),
              expected: processed === 0 ? undefined : String(processed),
            });
            processed += records.length;
            return {
              records: [],
              state: [
                { key: 'count', value: String(processed) },
                ...records.map((r) => ({ key: `turn/${r.value.turnId}`, value: r.value.text })),
                // Deleting a key written by an earlier batch.
                ...(processed === 3 ? [{ key: 'turn/t0', value: null }] : []),
              ],
            };
          },
          committedAt(g, Topics.raw, 3),
        );
        assert.ok(seen.length >= 2, `expected several batches, got ${seen.length}`);
        assert.deepEqual(
          seen.map((s) => s.read),
          seen.map((s) => s.expected),
        );

        const view = log.stateOf(g);
        assert.equal(await view.get('count'), '3');
        assert.equal(await view.get('turn/t1'), 'message number 1');
        assert.equal(await view.get('turn/t0'), undefined, 'deleted');
        assert.deepEqual((await view.keys('turn/')).sort(), ['turn/t1', 'turn/t2']);
        assert.deepEqual(await view.keys('nothing/'), []);
        // State belongs to its group.
        assert.equal(await log.stateOf(group('stranger')).get('count'), undefined);
      });

      it('state survives between two consume runs of the same group', async () => {
        const g = group('state-runs');
        await log.append(Topics.raw, [toAppend(turn(0))]);
        const counter: BatchHandler<typeof Topics.raw> = async (records, state) => {
          const count = Number((await state.get('count')) ?? '0') + records.length;
          return { records: [], state: [{ key: 'count', value: String(count) }] };
        };
        await consumeUntil({ group: g, topic: Topics.raw }, counter, committedAt(g, Topics.raw, 1));
        await log.append(Topics.raw, [toAppend(turn(1)), toAppend(turn(2))]);
        await consumeUntil({ group: g, topic: Topics.raw }, counter, committedAt(g, Topics.raw, 3));
        assert.equal(await log.stateOf(g).get('count'), '3');
      });

      it('keys(prefix) finds keys whatever characters follow the prefix', async () => {
        const g = group('state-keys');
        await log.append(Topics.raw, [toAppend(turn(0))]);
        const keys = [
          'conv\u001fa',
          'conv\u001fzz',
          'conv\u001f\u{20000}',
          'conv\u001f\u00e9',
          'convx',
          'other',
        ];
        await consumeUntil(
          { group: g, topic: Topics.raw },
          async () => ({ records: [], state: keys.map((key) => ({ key, value: key })) }),
          committedAt(g, Topics.raw, 1),
        );
        const found = await log.stateOf(g).keys('conv\u001f');
        assert.deepEqual(
          [...found].sort(),
          ['conv\u001fa', 'conv\u001fzz', 'conv\u001f\u{20000}', 'conv\u001f\u00e9'].sort(),
        );
        assert.equal(await log.stateOf(g).get('conv\u001f\u{20000}'), 'conv\u001f\u{20000}');
      });
    });

    describe('replay', () => {
      it('read(topic, 0, n) returns everything after the consumers finished', async () => {
        const g = group('replay');
        const events = [0, 1, 2, 3, 4].map((i) => turn(i));
        await log.append(Topics.raw, events.map(toAppend));
        await consumeUntil(
          { group: g, topic: Topics.raw, batchSize: 2 },
          async (records) => passThroughOutput(records),
          committedAt(g, Topics.raw, 5),
        );

        const raw = await log.read(Topics.raw, 0, 1000);
        assert.deepEqual(
          raw.map((r) => plain(r.value)),
          events,
        );
        const compressed = await log.read(Topics.compressed, 0, 1000);
        assert.deepEqual(
          compressed.map((r) => [r.value.event.turnId, r.value.compressedText]),
          events.map((e) => [e.turnId, e.text.toUpperCase()]),
        );
        const offsets = compressed.map((r) => r.offset);
        if (traits.denseOutputOffsets)
          assert.deepEqual(
            offsets,
            events.map((_, i) => i),
          );
        else
          assert.ok(
            offsets.every((o, i) => i === 0 || o > offsets[i - 1]!),
            `offsets increase: ${offsets.join(',')}`,
          );
        // Replaying twice gives the same records.
        assert.deepEqual(
          (await log.read(Topics.compressed, 0, 1000)).map((r) => plain(r.value)),
          compressed.map((r) => plain(r.value)),
        );
        // Replay from an offset (of the raw topic, written by append(): dense on every log), and of the
        // output topic from the position of its third record.
        assert.deepEqual(
          (await log.read(Topics.raw, 3, 1000)).map((r) => r.value.turnId),
          ['t3', 't4'],
        );
        assert.deepEqual(
          (await log.read(Topics.compressed, offsets[2]!, 1000)).map((r) => r.value.event.turnId),
          ['t2', 't3', 't4'],
        );
      });
    });

    describe('erasure', () => {
      const alice = (i: number) => turn(i, { userId: 'alice', conversationId: 'conv-alice' });
      const bob = (i: number) => turn(i, { userId: 'bob', conversationId: 'conv-bob' });
      /** A stage that forwards each turn and keeps a per-conversation state value (keys name the user). */
      const stage: BatchHandler<typeof Topics.raw> = async (records) => ({
        ...passThroughOutput(records),
        state: records.map((r) => ({ key: conversationStateKey('buf', r.value), value: r.value.text })),
      });
      const turnIds = (records: readonly LogRecord[]) =>
        records.map((r) =>
          'event' in r.value ? r.value.event.turnId : (r.value as ConversationEvent).turnId,
        );

      it('an erased user is gone for every reader and from stage state; others stay; the tombstone records it', async () => {
        const g = group('erase');
        await log.append(Topics.raw, [alice(0), alice(1), bob(2)].map(toAppend));
        await consumeUntil({ group: g, topic: Topics.raw }, stage, committedAt(g, Topics.raw, 3));
        const aliceKey = conversationStateKey('buf', alice(0));
        const bobKey = conversationStateKey('buf', bob(2));
        assert.equal(await log.stateOf(g).get(aliceKey), 'message number 1');

        const erasure = await log.eraseUser('tenant-a', 'alice', Date.now());
        const records = Object.values(erasure.records).reduce((sum, n) => sum + n, 0);
        assert.ok(records + (erasure.keys ?? 0) > 0, `something was removed: ${JSON.stringify(erasure)}`);
        assert.ok(
          (erasure.state[g] ?? 0) >= 1,
          `the group's state was searched: ${JSON.stringify(erasure.state)}`,
        );

        assert.deepEqual(turnIds(await log.read(Topics.raw, 0, 10)), ['t2']);
        assert.deepEqual(turnIds(await log.read(Topics.compressed, 0, 10)), ['t2']);
        // A new consumer from the start never sees the user's records.
        const fresh = group('erase-fresh');
        const seen: string[] = [];
        await consumeUntil(
          { group: fresh, topic: Topics.raw },
          async (batch) => {
            seen.push(...batch.map((r) => r.value.turnId));
            return { records: [], state: [] };
          },
          async () => seen.length >= 1 && (await log.committedOffset(fresh, Topics.raw)) >= 3,
        );
        assert.deepEqual(seen, ['t2']);
        assert.equal(await log.stateOf(g).get(aliceKey), undefined);
        assert.equal(await log.stateOf(g).get(bobKey), 'message number 2');

        const [tombstone] = await log.erasures('tenant-a');
        assert.equal(tombstone?.userId, 'alice');
        assert.equal(tombstone?.completedAt, null);
        await log.completeErasure('tenant-a', 'alice', '{"receipt":1}', Date.now());
        const [completed] = await log.erasures('tenant-a');
        assert.equal(completed?.receipt, '{"receipt":1}');
        assert.notEqual(completed?.completedAt, null);
        assert.deepEqual(await log.erasures('tenant-b'), []);
        // Again: idempotent.
        await log.eraseUser('tenant-a', 'alice', Date.now());
        assert.deepEqual(turnIds(await log.read(Topics.raw, 0, 10)), ['t2']);
      });

      it('a batch in flight during the erasure: what it made of the user does not survive', async () => {
        const g = group('erase-in-flight');
        await log.append(Topics.raw, [alice(0), bob(1)].map(toAppend));
        let entered = false;
        let release: () => void = () => undefined;
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        const controller = new AbortController();
        const running = log.consume(
          { group: g, topic: Topics.raw, signal: controller.signal },
          async (records, state) => {
            entered = true;
            await gate;
            return stage(records, state);
          },
        );
        try {
          await waitFor(async () => entered, 'the batch to start');
          await log.eraseUser('tenant-a', 'alice', Date.now());
          release();
          await waitFor(committedAt(g, Topics.raw, 2), 'the batch to commit');
        } finally {
          release();
          controller.abort();
          await running;
        }
        assert.deepEqual(turnIds(await log.read(Topics.compressed, 0, 10)), ['t1']);
        assert.equal(await log.stateOf(g).get(conversationStateKey('buf', alice(0))), undefined);
        assert.equal(await log.stateOf(g).get(conversationStateKey('buf', bob(1))), 'message number 1');
      });
    });

    describe('stopping', () => {
      it('consume returns promptly when the signal aborts while it waits for records', async () => {
        const g = group('stop');
        const controller = new AbortController();
        let calls = 0;
        const running = log.consume({ group: g, topic: Topics.raw, signal: controller.signal }, async () => {
          calls++;
          return { records: [], state: [] };
        });
        // Let the consumer reach its wait.
        for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
        const abortedAt = Date.now();
        controller.abort();
        await running;
        const took = Date.now() - abortedAt;
        assert.ok(took < 1000, `consume took ${took} ms to stop`);
        assert.equal(calls, 0);
      });

      it('consume returns at once with an already aborted signal', async () => {
        const g = group('stop-early');
        await log.append(Topics.raw, [toAppend(turn(0))]);
        let calls = 0;
        await log.consume({ group: g, topic: Topics.raw, signal: AbortSignal.abort() }, async () => {
          calls++;
          return { records: [], state: [] };
        });
        assert.equal(calls, 0);
        assert.equal(await log.committedOffset(g, Topics.raw), 0);
      });

      it('consume returns promptly when aborted during retry backoff', async () => {
        const g = group('stop-backoff');
        await log.append(Topics.raw, [toAppend(turn(0))]);
        const controller = new AbortController();
        let calls = 0;
        const running = log.consume({ group: g, topic: Topics.raw, signal: controller.signal }, async () => {
          calls++;
          throw new UnavailableError('down');
        });
        await waitFor(async () => calls >= 1, 'the first failure');
        const abortedAt = Date.now();
        controller.abort();
        await running;
        const took = Date.now() - abortedAt;
        assert.ok(took < 1000, `consume took ${took} ms to stop`);
        assert.equal(await log.committedOffset(g, Topics.raw), 0);
      });
    });
  });
}

const turn = makeTurn;

function toAppend(event: ConversationEvent): AppendRecord<typeof Topics.raw> {
  return { key: conversationKey(event), value: event };
}

/** The compressed turn a test stage makes of an event (its text upper-cased). */
export function compressedOf(event: ConversationEvent): CompressedTurn {
  return {
    event,
    compressedText: event.text.toUpperCase(),
    originalTokens: 3,
    keptTokens: 3,
    keepRatio: 1,
    scorerVersion: 'contract',
  };
}

function compressedRecord(event: ConversationEvent): AppendRecord<typeof Topics.compressed> {
  return { key: conversationKey(event), value: compressedOf(event) };
}

/** A stage that forwards each turn (upper-cased) and records what it did in its state. */
function passThroughOutput(records: readonly LogRecord<typeof Topics.raw>[]): StageOutput {
  const output: OutputRecord[] = records.map((r) => ({
    topic: Topics.compressed,
    key: r.key,
    value: compressedOf(plain(r.value)),
  }));
  const last = records.at(-1);
  return {
    records: output,
    state: [
      ...records.map((r) => ({ key: `done/${r.value.turnId}`, value: '1' })),
      ...(last === undefined ? [] : [{ key: 'last-turn', value: last.value.turnId }]),
    ],
  };
}

/** Adapters may decode into class instances; compare values as plain data. */
function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(5);
  }
}
