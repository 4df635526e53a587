import { keyringTopicConfig, type TopicLayout } from '../../../services/adapters/kafka/kafka-topics.js';
import { readRange } from '../../../services/adapters/kafka/kafka-range-reader.js';
import { UserKeyring } from '../../../services/adapters/kafka/user-keyring.js';
import { isSealed, sealedRef, unseal, type KeyRef } from '../../../services/adapters/kafka/sealed-value.js';
import { testKafka, testLogger } from './servers.js';

/** One record of a topic as a new reader finds it: its bytes opened with the keys that exist now. */
export interface ReadableRecord {
  readonly partition: number;
  readonly key: string;
  /** The bytes as written before sealing; null when the value is sealed with a destroyed key (or is null). */
  readonly value: Buffer | null;
  /** Whose key sealed it; null for a plain value. */
  readonly sealedFor: KeyRef | null;
  /** The bytes on the broker. */
  readonly stored: Buffer | null;
}

/**
 * Every record of a topic (a data topic or a changelog, by its full name) as a process started now reads
 * it: with the keyring as it is now, so what an erasure shredded reads as null.
 */
export async function readableRecords(layout: TopicLayout, topic: string): Promise<ReadableRecord[]> {
  const kafka = testKafka('lightmem-test-sealed');
  const admin = kafka.admin();
  const producer = kafka.producer();
  await admin.connect();
  await producer.connect();
  const keyring = new UserKeyring({
    kafka,
    admin,
    producer,
    topic: keyringTopicConfig(layout),
    groupPrefix: layout.prefix,
    logger: testLogger,
  });
  try {
    await keyring.sync();
    const records: ReadableRecord[] = [];
    await readRange(kafka, admin, topic, {
      onMessage: (partition, message) => {
        const stored = message.value;
        const key = message.key?.toString('utf8') ?? '';
        if (stored === null || !isSealed(stored)) {
          records.push({ partition, key, value: stored, sealedFor: null, stored });
          return false;
        }
        const ref = sealedRef(stored);
        const userKey = keyring.keyOf(ref);
        records.push({
          partition,
          key,
          value: userKey === undefined ? null : unseal(stored, userKey),
          sealedFor: ref,
          stored,
        });
        return false;
      },
    });
    return records;
  } finally {
    await keyring.close();
    await producer.disconnect();
    await admin.disconnect();
  }
}
