import { randomUUID } from 'node:crypto';
import type { Admin, Kafka, KafkaMessage } from 'kafkajs';
import { LightmemError, UnavailableError, errorMessage } from '../../core/errors.js';
import { deleteGroupQuietly, disconnectQuietly } from './disconnect.js';
import { withTimeout } from '../../core/deadline.js';

export interface PartitionEnd {
  readonly partition: number;
  /** Last stable offset: the position after the last committed record. */
  readonly end: number;
  readonly start: number;
}

/** End (last stable) and start offsets of every partition of a topic. */
export async function partitionEnds(admin: Admin, topic: string): Promise<PartitionEnd[]> {
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.map((o) => ({ partition: o.partition, end: Number(o.high), start: Number(o.low) }));
  } catch (error) {
    throw new UnavailableError(
      `kafka: reading the offsets of ${topic} failed: ${errorMessage(error)}`,
      error,
    );
  }
}

export interface RangeRead {
  /** Where to start per partition (absent: the partition's start). */
  readonly from?: ReadonlyMap<number, number>;
  /** Called for every committed record below the end snapshot, in order per partition. */
  readonly onMessage: (partition: number, message: KafkaMessage) => boolean | undefined;
  readonly timeoutMs?: number;
}

/**
 * Reads the committed records of a topic from the given offsets up to the ends it has now, with a
 * throwaway consumer group (kafkajs has no manual partition assignment). Used at start-up (restoring
 * a stage's state) and for replays; never per record. `onMessage` may return true to stop early.
 */
export async function readRange(
  kafka: Kafka,
  admin: Admin,
  topic: string,
  request: RangeRead,
): Promise<void> {
  const ends = await partitionEnds(admin, topic);
  const position = new Map<number, number>();
  for (const { partition, start } of ends)
    position.set(partition, Math.max(start, request.from?.get(partition) ?? 0));
  const pending = (): boolean => ends.some(({ partition, end }) => (position.get(partition) ?? 0) < end);
  if (!pending()) return;

  const groupId = `lightmem-reader-${randomUUID()}`;
  const consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
    sessionTimeout: 10_000,
  });
  let stopEarly = false;
  let settle: (error?: unknown) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    settle = (error?: unknown) =>
      error === undefined
        ? resolve()
        : reject(error instanceof Error ? error : new Error(errorMessage(error)));
  });
  const endOf = new Map(ends.map((e) => [e.partition, e.end]));
  const crash = consumer.on(consumer.events.CRASH, (event) => {
    if (!event.payload.restart) settle(event.payload.error);
  });
  let seeked = false;
  const seekStarts = (): void => {
    if (seeked) return;
    seeked = true;
    for (const [partition, offset] of position) consumer.seek({ topic, partition, offset: String(offset) });
  };
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async (payload) => {
        const { batch } = payload;
        if (stopEarly) return;
        // Moves this consumer's fetch position past the batch (nothing is committed): without it the next
        // fetch asks for the same offsets again, and a topic longer than one fetch (several segments, more
        // than a fetch's bytes) is never read to its end.
        payload.resolveOffset(batch.lastOffset());
        const end = endOf.get(batch.partition) ?? 0;
        const from = position.get(batch.partition) ?? 0;
        for (const message of batch.messages) {
          const offset = Number(message.offset);
          if (offset < from || offset >= end) continue;
          if (request.onMessage(batch.partition, message) === true) {
            stopEarly = true;
            settle();
            return;
          }
        }
        position.set(batch.partition, Math.max(from, Number(batch.lastOffset()) + 1));
        if (!pending()) settle();
      },
    });
    seekStarts();
    const timeoutMs = request.timeoutMs ?? 120_000;
    await withTimeout(
      done,
      timeoutMs,
      () =>
        new UnavailableError(`kafka: reading ${topic} did not reach its end within ${timeoutMs / 1000} s`),
    );
  } catch (error) {
    if (error instanceof LightmemError) throw error;
    throw new UnavailableError(`kafka: reading ${topic} failed: ${errorMessage(error)}`, error);
  } finally {
    crash();
    await disconnectQuietly(consumer);
    await deleteGroupQuietly(admin, groupId);
  }
}
