import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { compressedOf, eventLogContract } from '../contract/event-log.contract.js';
import { makeTurn } from '../support/event-fixtures.js';
import { Topics, conversationKey } from '../../services/core/model/topics.js';
import type { BatchHandler } from '../../services/core/ports/event-log.js';
import { readRange } from '../../services/adapters/kafka/kafka-range-reader.js';
import { kafkaTopic } from '../../services/adapters/kafka/kafka-topics.js';
import { deleteTopics, freshLayout, openKafkaLog, servers } from './support/servers.js';
import { memoryLogger } from '../support/memory-logger.js';
import { waitUntil } from './support/distributed.js';

eventLogContract(
  'KafkaEventLog (real Kafka + schema registry)',
  async () => {
    const layout = freshLayout('contract');
    const log = await openKafkaLog(layout);
    return {
      log,
      close: async () => {
        await log.close();
        await deleteTopics(layout);
      },
    };
  },
  { dedupOnAppend: false, denseOutputOffsets: false },
);

describe('KafkaEventLog on several partitions', () => {
  it('two replicas of a stage (one group, two instance ids) share the partitions: every record takes effect once, in order per conversation', async () => {
    const layout = freshLayout('replicas', 4);
    const a = await openKafkaLog(layout, { instanceId: 'a' });
    const b = await openKafkaLog(layout, { instanceId: 'b' });
    try {
      const events = Array.from({ length: 240 }, (_, i) =>
        makeTurn(i, { conversationId: `conv-${i % 12}`, seq: Math.floor(i / 12), turnId: `t${i}` }),
      );
      await a.append(
        Topics.raw,
        events.map((event) => ({ key: conversationKey(event), value: event })),
      );
      const seen = new Map<string, number[]>();
      const handler: BatchHandler<typeof Topics.raw> = async (records) => {
        for (const record of records) {
          const list = seen.get(record.key) ?? [];
          list.push(record.value.seq);
          seen.set(record.key, list);
        }
        return {
          records: records.map((r) => ({
            topic: Topics.compressed,
            key: r.key,
            value: compressedOf(r.value),
          })),
          state: [],
        };
      };
      const controller = new AbortController();
      const options = { group: 'stage', topic: Topics.raw, signal: controller.signal, batchSize: 8 };
      const running = [a.consume(options, handler), b.consume(options, handler)];
      try {
        const deadline = Date.now() + 60_000;
        while ((await a.committedOffset('stage', Topics.raw)) < 240) {
          assert.ok(Date.now() < deadline, 'the two replicas did not finish within 60 s');
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        assert.ok((await a.stableMembers('stage')) === 2, 'both replicas are members of the group');
      } finally {
        controller.abort();
        await Promise.all(running);
      }
      // Each conversation was handled in order (a replica that lost a partition mid-batch may have handled
      // a batch twice, which the transaction discards: order still holds per delivery).
      for (const [key, seqs] of seen) {
        const firsts = seqs.filter((seq, i) => seqs.indexOf(seq) === i);
        assert.deepEqual(
          firsts,
          [...firsts].sort((x, y) => x - y),
          `order of ${key}`,
        );
      }
      // Effects exactly once: every turn is in the output topic once.
      const counts = new Map<string, number>();
      const kafka = new Kafka({
        clientId: 'lightmem-test-reader',
        brokers: servers.kafkaBrokers,
        logLevel: logLevel.NOTHING,
      });
      const admin = kafka.admin();
      await admin.connect();
      try {
        await readRange(kafka, admin, kafkaTopic(layout, Topics.compressed), {
          onMessage: (_partition, message) => {
            const turn = /t\d+/.exec(message.value?.toString('latin1') ?? '')?.[0] ?? '?';
            counts.set(turn, (counts.get(turn) ?? 0) + 1);
            return false;
          },
        });
      } finally {
        await admin.disconnect();
      }
      assert.equal(counts.size, 240);
      assert.ok(
        [...counts.values()].every((n) => n === 1),
        'no turn twice in the output',
      );
    } finally {
      await a.close();
      await b.close();
      await deleteTopics(layout);
    }
  });
});

describe('KafkaEventLog consumer watchdog', () => {
  it('an idle consumer is not taken for stalled (it keeps fetching), and still handles what comes later', async () => {
    const layout = freshLayout('idle');
    const logger = memoryLogger();
    const log = await openKafkaLog(layout, { stallTimeoutMs: 1_500, logger });
    const controller = new AbortController();
    let handled = 0;
    const running = log.consume(
      { group: 'stage', topic: Topics.raw, signal: controller.signal, batchSize: 8 },
      async (records) => {
        handled += records.length;
        return { records: [], state: [] };
      },
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 8_000));
      const event = makeTurn(1);
      await log.append(Topics.raw, [{ key: conversationKey(event), value: event }]);
      await waitUntil(async () => handled >= 1, 'the record to be handled', 30_000);
      assert.deepEqual(
        logger.entries.filter((e) => /stalled/.test(e.message)),
        [],
        'no stall was reported while the consumer idled',
      );
    } finally {
      controller.abort();
      await running;
      await log.close();
      await deleteTopics(layout);
    }
  });
});
