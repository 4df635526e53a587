import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compressedOf, eventLogContract } from '../contract/event-log.contract.js';
import { makeTurn } from '../support/event-fixtures.js';
import { Topics, conversationKey } from '../../services/core/model/topics.js';
import type { BatchHandler } from '../../services/core/ports/event-log.js';
import { readableRecords } from './support/sealed-records.js';
import { kafkaTopic, keyringTopic } from '../../services/adapters/kafka/kafka-topics.js';
import { readRange } from '../../services/adapters/kafka/kafka-range-reader.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { deleteTopics, freshLayout, groupAssignment, openKafkaLog, testKafka } from './support/servers.js';
import { memoryLogger } from '../support/memory-logger.js';
import { LightmemError } from '../../services/core/errors.js';
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
    const kafka = testKafka('lightmem-test-reader');
    const admin = kafka.admin();
    await admin.connect();
    try {
      const events = Array.from({ length: 240 }, (_, i) =>
        makeTurn(i, { conversationId: `conv-${i % 12}`, seq: Math.floor(i / 12), turnId: `t${i}` }),
      );
      const seen = new Map<string, number[]>();
      const handled = { a: 0, b: 0 };
      const handlerOf =
        (replica: keyof typeof handled): BatchHandler<typeof Topics.raw> =>
        async (records) => {
          handled[replica] += records.length;
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
      const running = [a.consume(options, handlerOf('a')), b.consume(options, handlerOf('b'))];
      try {
        // The records are written only once both replicas own partitions: written earlier, the replica
        // that joins first can handle all of them before the other one joins.
        let owned: number[][] = [];
        await waitUntil(
          async () => {
            owned = await groupAssignment(admin, layout, 'stage', Topics.raw);
            return owned.length === 2 && owned.every((partitions) => partitions.length > 0);
          },
          () => `both replicas to own partitions (last seen: ${JSON.stringify(owned)})`,
          60_000,
        );
        await a.append(
          Topics.raw,
          events.map((event) => ({ key: conversationKey(event), value: event })),
        );
        await waitUntil(
          async () => (await a.committedOffset('stage', Topics.raw)) >= events.length,
          () =>
            `the two replicas to commit all ${events.length} records (handled: ${JSON.stringify(handled)})`,
          60_000,
        );
      } finally {
        controller.abort();
        await Promise.all(running);
      }
      assert.ok(handled.a > 0 && handled.b > 0, `both replicas handled records: ${JSON.stringify(handled)}`);
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
      // Values are sealed with their user's key: opened as a new reader would.
      for (const record of await readableRecords(layout, kafkaTopic(layout, Topics.compressed))) {
        const turn = /t\d+/.exec(record.value?.toString('latin1') ?? '')?.[0] ?? '?';
        counts.set(turn, (counts.get(turn) ?? 0) + 1);
      }
      assert.equal(counts.size, 240);
      assert.ok(
        [...counts.values()].every((n) => n === 1),
        'no turn twice in the output',
      );
    } finally {
      await admin.disconnect();
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
      // Idle from the moment the consumer is in its group (its start-up is not idling).
      await waitUntil(async () => (await log.stableMembers('stage')) === 1, 'the consumer to join', 60_000);
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

describe('KafkaEventLog reads of more than one fetch', () => {
  it('read() reaches the end of a topic longer than one fetch (several MiB)', async () => {
    const layout = freshLayout('long-read');
    const log = await openKafkaLog(layout);
    try {
      // 400 turns of 10 KiB: 4 MiB, four times what one fetch of a partition returns.
      const events = Array.from({ length: 400 }, (_, i) =>
        makeTurn(i, { text: `${i} ${'x'.repeat(10_240)}` }),
      );
      for (let start = 0; start < events.length; start += 50) {
        await log.append(
          Topics.raw,
          events.slice(start, start + 50).map((event) => ({ key: conversationKey(event), value: event })),
        );
      }
      const records = await log.read(Topics.raw, 0, 1_000);
      assert.equal(records.length, 400);
      assert.deepEqual(
        records.map((r) => r.value.seq),
        events.map((e) => e.seq),
      );
    } finally {
      await log.close();
      await deleteTopics(layout);
    }
  });
});

describe('crypto-shredding on Kafka', () => {
  it('user keys wrapped with a key-encryption key: readers need the same one, and a wrong one is a config error, never "erased"', async () => {
    const layout = freshLayout('kek');
    const kek = randomBytes(32).toString('base64');
    const writer = await openKafkaLog(layout, { keyEncryptionKey: kek });
    const event = makeTurn(0, { userId: 'erin' });
    try {
      await writer.append(Topics.raw, [{ key: conversationKey(event), value: event }]);
    } finally {
      await writer.close();
    }
    const kafka = testKafka('lightmem-test-kek');
    const admin = kafka.admin();
    await admin.connect();
    const stored: string[] = [];
    await readRange(kafka, admin, keyringTopic(layout), {
      onMessage: (_partition, message) => {
        stored.push(message.value?.toString('utf8') ?? '');
        return false;
      },
    });
    await admin.disconnect();
    assert.ok(stored.length === 1 && stored[0]?.includes('"wrapped":true'), 'the key is stored wrapped');
    try {
      const same = await openKafkaLog(layout, { keyEncryptionKey: kek });
      try {
        assert.deepEqual(
          (await same.read(Topics.raw, 0, 10)).map((record) => record.value.turnId),
          [event.turnId],
        );
      } finally {
        await same.close();
      }
      for (const other of [undefined, randomBytes(32).toString('base64')]) {
        const reader = await openKafkaLog(layout, other === undefined ? {} : { keyEncryptionKey: other });
        try {
          await assert.rejects(
            reader.read(Topics.raw, 0, 10),
            (error: unknown) =>
              error instanceof LightmemError &&
              error.code === 'config_invalid' &&
              error.field === 'kafka.keyEncryptionKey',
          );
        } finally {
          await reader.close();
        }
      }
    } finally {
      await deleteTopics(layout);
    }
  });

  it('a lost keyring is reported: records whose keys no process ever saw read as erased, with a warning', async () => {
    const layout = freshLayout('lost-keyring');
    const writer = await openKafkaLog(layout);
    const event = makeTurn(0, { userId: 'dora' });
    await writer.append(Topics.raw, [{ key: conversationKey(event), value: event }]);
    await writer.close();
    const kafka = testKafka('lightmem-test-lost-keyring');
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [keyringTopic(layout)] });
    await admin.disconnect();
    const logger = memoryLogger();
    const reader = await openKafkaLog(layout, { logger });
    try {
      assert.deepEqual(await reader.read(Topics.raw, 0, 10), []);
      const warning = logger.entries.find((entry) => /never saw/.test(entry.message));
      assert.ok(warning !== undefined, 'the operator is told');
      assert.equal(warning.fields?.['userId'], 'dora');
    } finally {
      await reader.close();
      await deleteTopics(layout);
    }
  });

  it("a destroyed user key leaves the brokers' disks: compaction removes it from the keyring topic", async () => {
    // Segments roll and become compactable within a second (the default is minutes).
    const layout = { ...freshLayout('keyring'), keyring: { segmentMs: 1_000, maxCompactionLagMs: 1_000 } };
    const log = await openKafkaLog(layout);
    const kafka = testKafka('lightmem-test-keyring');
    const admin = kafka.admin();
    await admin.connect();
    /** The key records of the keyring topic as the broker holds them now: key → values in order. */
    const keyring = async () => {
      const held = new Map<string, (string | null)[]>();
      await readRange(kafka, admin, keyringTopic(layout), {
        onMessage: (_partition, message) => {
          const key = message.key?.toString('utf8') ?? '';
          held.set(key, [...(held.get(key) ?? []), message.value?.toString('utf8') ?? null]);
          return false;
        },
      });
      return held;
    };
    const carolKeys = (held: Map<string, (string | null)[]>) =>
      [...held].filter(([key]) => key.startsWith(JSON.stringify(['key', 'tenant-a', 'carol']).slice(0, -1)));
    try {
      const event = makeTurn(0, { userId: 'carol' });
      await log.append(Topics.raw, [{ key: conversationKey(event), value: event }]);
      const before = carolKeys(await keyring());
      assert.equal(before.length, 1);
      assert.ok(
        before[0]?.[1].some((value) => value !== null && value.includes('"key"')),
        'the key is held',
      );
      await log.eraseUser('tenant-a', 'carol', Date.now());
      const started = Date.now();
      let filler = 0;
      await waitUntil(
        async () => {
          // New users' keys keep the topic moving: the segment holding carol's key rolls and is compacted.
          const next = makeTurn(++filler, { userId: `filler-${filler}` });
          await log.append(Topics.raw, [{ key: conversationKey(next), value: next }]);
          await sleep(1_000);
          return carolKeys(await keyring()).every(([, values]) => values.every((value) => value === null));
        },
        'compaction to remove the destroyed key',
        120_000,
      );
      console.log(`# the destroyed key left the topic ${Date.now() - started} ms after the erasure`);
      const [tombstone] = await log.erasures('tenant-a');
      assert.equal(tombstone?.userId, 'carol', 'the erasure tombstone stays');
      assert.deepEqual(await log.read(Topics.raw, 0, 1), [], "carol's turn reads as erased");
    } finally {
      await admin.disconnect();
      await log.close();
      await deleteTopics(layout);
    }
  });
});
