import { randomBytes, randomUUID } from 'node:crypto';
import type { Admin, Consumer, ITopicConfig, Kafka, KafkaMessage, Producer } from 'kafkajs';
import { z } from 'zod';
import type { ErasureTombstone } from '../../core/ports/event-log.js';
import type { Logger } from '../../core/ports/logger.js';
import { LightmemError, UnavailableError, errorMessage, errorFields } from '../../core/errors.js';
import { withTimeout } from '../../core/deadline.js';
import { deleteGroupQuietly, disconnectQuietly } from './disconnect.js';
import { ensureTopics } from './kafka-topics.js';
import { partitionEnds, type PartitionEnd } from './kafka-range-reader.js';
import { unwrapKey, userKeyBytes, wrapKey, type KeyRef } from './sealed-value.js';

/** A user's key: what seals their records, and its reference. */
export interface UserKey {
  readonly ref: KeyRef;
  readonly key: Buffer;
}

export interface Owner {
  readonly tenantId: string;
  readonly userId: string;
}

const keyValueSchema = z.object({
  key: z.string().min(1),
  createdAt: z.number().int(),
  /** Wrapped with the deployment's key-encryption key (config `kafka.keyEncryptionKey`). */
  wrapped: z.boolean().optional(),
});
const erasureValueSchema = z.object({
  erasedAt: z.number().int(),
  completedAt: z.number().int().nullable(),
  receipt: z.string().nullable(),
});
const recordKeySchema = z.union([
  z.tuple([z.literal('key'), z.string(), z.string(), z.string()]),
  z.tuple([z.literal('erasure'), z.string(), z.string()]),
]);

function ownerId(tenantId: string, userId: string): string {
  return JSON.stringify([tenantId, userId]);
}

function keyRecordKey(ref: KeyRef): string {
  return JSON.stringify(['key', ref.tenantId, ref.userId, ref.keyId]);
}

function erasureRecordKey(owner: Owner): string {
  return JSON.stringify(['erasure', owner.tenantId, owner.userId]);
}

/** The keyring topic as one reader has applied it: live keys, destroyed key ids, erasure tombstones. */
class KeyringState {
  /** Owner → key id → key. */
  readonly live = new Map<string, Map<string, Buffer>>();
  /** Owner → key ids destroyed (as long as their tombstones were seen). */
  readonly destroyed = new Map<string, Set<string>>();
  readonly erasures = new Map<string, ErasureTombstone>();

  constructor(private readonly kek: Buffer | undefined) {}

  /** A key this process wrote (the reader applies the same record when it reaches it). */
  remember(ref: KeyRef, key: Buffer): void {
    const owner = ownerId(ref.tenantId, ref.userId);
    if (this.destroyed.get(owner)?.has(ref.keyId) === true) return;
    const keys = this.live.get(owner) ?? new Map<string, Buffer>();
    keys.set(ref.keyId, key);
    this.live.set(owner, keys);
  }

  /**
   * Applies one record of the topic; returns the owner whose key it destroyed, if it did. A wrapped key
   * that cannot be unwrapped (no key-encryption key, or another one) is a configuration error: reading it
   * as destroyed would make the user's data read as erased.
   */
  apply(key: string, value: Buffer | null, logger: Logger): Owner | null {
    let parsed: z.infer<typeof recordKeySchema>;
    try {
      parsed = recordKeySchema.parse(JSON.parse(key));
    } catch {
      logger.warn('keyring: a record with an unknown key was ignored', { key });
      return null;
    }
    if (parsed[0] === 'erasure') {
      const [, tenantId, userId] = parsed;
      if (value === null) return null;
      const decoded = erasureValueSchema.safeParse(safeJson(value));
      if (!decoded.success) {
        logger.warn('keyring: an erasure record that does not decode was ignored', { tenantId, userId });
        return null;
      }
      this.erasures.set(ownerId(tenantId, userId), { tenantId, userId, ...decoded.data });
      return null;
    }
    const [, tenantId, userId, keyId] = parsed;
    const owner = ownerId(tenantId, userId);
    if (value === null) {
      this.live.get(owner)?.delete(keyId);
      const destroyed = this.destroyed.get(owner) ?? new Set<string>();
      destroyed.add(keyId);
      this.destroyed.set(owner, destroyed);
      return { tenantId, userId };
    }
    if (this.destroyed.get(owner)?.has(keyId) === true) return null;
    const decoded = keyValueSchema.safeParse(safeJson(value));
    let bytes: Buffer | null = decoded.success ? Buffer.from(decoded.data.key, 'base64') : null;
    if (bytes !== null && decoded.data?.wrapped === true) bytes = this.unwrapped(bytes, key);
    if (bytes === null || bytes.length !== userKeyBytes) {
      logger.warn('keyring: a key record that does not decode was ignored', { tenantId, userId, keyId });
      return null;
    }
    const keys = this.live.get(owner) ?? new Map<string, Buffer>();
    keys.set(keyId, bytes);
    this.live.set(owner, keys);
    return null;
  }

  private unwrapped(wrapped: Buffer, label: string): Buffer {
    if (this.kek === undefined) {
      throw keyringKeyError(
        'the keyring holds wrapped user keys: set kafka.keyEncryptionKey (LIGHTMEM_KAFKA_KEY_ENCRYPTION_KEY) to the key the other processes use',
      );
    }
    const key = unwrapKey(wrapped, this.kek, label);
    if (key === null) {
      throw keyringKeyError(
        'a user key in the keyring does not unwrap with kafka.keyEncryptionKey: every process of a deployment needs the same one',
      );
    }
    return key;
  }
}

function keyringKeyError(message: string): LightmemError {
  return new LightmemError('config_invalid', message, { field: 'kafka.keyEncryptionKey', retryable: false });
}

function safeJson(value: Buffer): unknown {
  try {
    return JSON.parse(value.toString('utf8'));
  } catch {
    return null;
  }
}

/** A consumer that reads the keyring topic from its start and keeps following it. */
class KeyringFollower {
  readonly state: KeyringState;
  private readonly position = new Map<number, number>();
  private waiters: (() => void)[] = [];
  failure: unknown = undefined;

  private constructor(
    private readonly consumer: Consumer,
    private readonly groupId: string,
    private readonly admin: Admin,
    kek: Buffer | undefined,
  ) {
    this.state = new KeyringState(kek);
  }

  static async start(
    kafka: Kafka,
    admin: Admin,
    topic: string,
    groupPrefix: string,
    logger: Logger,
    onDestroyed: (owner: Owner) => void,
    kek: Buffer | undefined,
  ): Promise<KeyringFollower> {
    const groupId = `${groupPrefix}lightmem-keyring-${randomUUID()}`;
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, sessionTimeout: 10_000 });
    const follower = new KeyringFollower(consumer, groupId, admin, kek);
    consumer.on(consumer.events.CRASH, (event) => {
      if (event.payload.restart) return;
      follower.failure = event.payload.error;
      follower.wake();
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          if (follower.failure !== undefined) return;
          try {
            for (const message of batch.messages) follower.applyMessage(message, logger, onDestroyed);
          } catch (error) {
            // A key that cannot be read: this reader stops, and every wait on it fails with the error.
            follower.failure = error;
            follower.wake();
            return;
          }
          follower.position.set(batch.partition, Number(batch.lastOffset()) + 1);
          follower.wake();
          await Promise.resolve();
        },
      });
    } catch (error) {
      await follower.stop();
      throw new UnavailableError(
        `kafka: following the keyring ${topic} failed: ${errorMessage(error)}`,
        error,
      );
    }
    return follower;
  }

  private applyMessage(message: KafkaMessage, logger: Logger, onDestroyed: (owner: Owner) => void): void {
    const destroyed = this.state.apply(message.key?.toString('utf8') ?? '', message.value, logger);
    if (destroyed !== null) onDestroyed(destroyed);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  private reached(ends: readonly PartitionEnd[]): boolean {
    return ends.every(({ partition, end }) => (this.position.get(partition) ?? 0) >= end);
  }

  /** Resolves once every record below `ends` is applied; fails (retryably) if the consumer crashed. */
  async waitFor(ends: readonly PartitionEnd[], timeoutMs: number): Promise<void> {
    const reached = (async () => {
      while (!this.reached(ends)) {
        if (this.failure !== undefined) {
          if (this.failure instanceof LightmemError && !this.failure.retryable) throw this.failure;
          throw new UnavailableError(
            `kafka: the keyring reader stopped: ${errorMessage(this.failure)}`,
            this.failure,
          );
        }
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
    })();
    await withTimeout(
      reached,
      timeoutMs,
      () =>
        new UnavailableError(`kafka: the keyring was not read up to its end within ${timeoutMs / 1000} s`),
    );
  }

  async stop(): Promise<void> {
    this.wake();
    await disconnectQuietly(this.consumer);
    await deleteGroupQuietly(this.admin, this.groupId);
  }
}

export interface UserKeyringOptions {
  readonly kafka: Kafka;
  readonly admin: Admin;
  /**
   * The producer of the keyring's records (acks from every in-sync replica). Not the idempotent one of
   * the event log: keyring writes are idempotent by themselves (random key ids, tombstones), and a
   * producer of its own cannot be wedged by another caller's state after a broker restart.
   */
  readonly producer: Producer;
  readonly topic: ITopicConfig;
  /** Prefix of the keyring reader's throwaway consumer group. */
  readonly groupPrefix: string;
  readonly logger: Logger;
  /** Longest wait for the reader to reach the topic's end. Default 30 s. */
  readonly syncTimeoutMs?: number;
  /** Wraps the user keys written to the topic, and unwraps those read (32 bytes; config `kafka.keyEncryptionKey`). */
  readonly keyEncryptionKey?: Buffer | undefined;
}

/**
 * The per-user keys that seal every Kafka record and stage state value about a user, in a compacted topic
 * (one partition): `["key", tenant, user, keyId]` → the key, and `["erasure", tenant, user]` → the user's
 * erasure tombstone. Erasing a user writes the tombstone and a null for each of their keys: every process
 * drops the keys as it reads them (see `onDestroyed`), compaction removes them from the brokers' disks,
 * and every record and state value sealed with them, in every topic and every copy, is unreadable.
 *
 * Each process follows the topic with a reader of its own, started on first use; `sync` waits until the
 * reader has applied everything written before the call (a key another process just made, an erasure).
 * Keys are never derived or cached elsewhere.
 */
export class UserKeyring {
  private follower: KeyringFollower | null = null;
  private starting: Promise<KeyringFollower> | null = null;
  private readonly creating = new Map<string, Promise<UserKey>>();
  private readonly listeners = new Set<(owner: Owner) => void>();
  private closed = false;
  private lastFreshenWarning = 0;

  constructor(private readonly options: UserKeyringOptions) {}

  /** Calls `listener` whenever a user's key is destroyed (in this process or, as read, in another). */
  onDestroyed(listener: (owner: Owner) => void): void {
    this.listeners.add(listener);
  }

  /** Waits until everything written to the keyring before this call is applied here. */
  async sync(): Promise<void> {
    const limitMs = (this.options.syncTimeoutMs ?? 30_000) * 2;
    const work = (async () => {
      const follower = await this.running();
      const ends = await partitionEnds(this.options.admin, this.topicName);
      await follower.waitFor(ends, this.options.syncTimeoutMs ?? 30_000);
    })();
    try {
      await withTimeout(
        work,
        limitMs,
        () => new UnavailableError(`kafka: reading the keyring took over ${limitMs / 1000} s`),
      );
    } catch (error) {
      // A reader that does not reach the end (a consumer wedged after a broker restart) is replaced: the
      // next call starts a fresh one instead of waiting on it again.
      if (!(error instanceof LightmemError) || error.retryable) this.abandonReader(error);
      throw error;
    }
  }

  /** Marks the current reader failed and forgets a start in progress, so the next `sync` starts anew. */
  private abandonReader(reason: unknown): void {
    if (this.follower !== null && this.follower.failure === undefined) this.follower.failure = reason;
    this.starting = null;
    this.options.logger.warn('keyring reader replaced', errorFields(reason));
  }

  /**
   * `sync`, best effort and briefly: for writers (an append), which must not stall on a reader that is
   * slow to come back after a broker restart. What it would have taught (an erasure a moment ago) arrives
   * with the reader anyway. Readers of sealed values use `sync`: a key they cannot find reads as erased.
   */
  async freshen(timeoutMs = 5_000): Promise<void> {
    try {
      await withTimeout(this.sync(), timeoutMs, () => new UnavailableError('the keyring reader lags'));
    } catch (error) {
      const now = Date.now();
      if (now - this.lastFreshenWarning > 60_000) {
        this.lastFreshenWarning = now;
        this.options.logger.warn('keyring not read up to its end before an append; going on', {
          ...errorFields(error),
        });
      }
    }
  }

  /** A key the user has now (as last synced), or undefined. */
  current(owner: Owner): UserKey | undefined {
    const keys = this.follower?.state.live.get(ownerId(owner.tenantId, owner.userId));
    if (keys === undefined) return undefined;
    // The smallest id: every process that knows the same keys seals with the same one.
    const [keyId] = [...keys.keys()].sort();
    const key = keyId === undefined ? undefined : keys.get(keyId);
    return keyId === undefined || key === undefined ? undefined : { ref: { ...owner, keyId }, key };
  }

  /**
   * The key to seal the user's new records with: one they have, or a new one (written to the keyring before
   * it is used, so that every reader can find it). Call `sync` first, once per batch.
   */
  async keyFor(owner: Owner): Promise<UserKey> {
    const known = this.current(owner);
    if (known !== undefined) return known;
    const id = ownerId(owner.tenantId, owner.userId);
    let pending = this.creating.get(id);
    if (pending === undefined) {
      pending = this.create(owner).finally(() => this.creating.delete(id));
      this.creating.set(id, pending);
    }
    return pending;
  }

  /** The key a reference names, if it is live here; undefined when it was destroyed (or is unknown). */
  keyOf(ref: KeyRef): Buffer | undefined {
    return this.follower?.state.live.get(ownerId(ref.tenantId, ref.userId))?.get(ref.keyId);
  }

  /** Whether this process has read the reference's key (live, or destroyed). */
  knows(ref: KeyRef): boolean {
    const owner = ownerId(ref.tenantId, ref.userId);
    const state = this.follower?.state;
    return (
      state?.live.get(owner)?.has(ref.keyId) === true || state?.destroyed.get(owner)?.has(ref.keyId) === true
    );
  }

  /**
   * Destroys every key of the user and leaves (or renews) their erasure tombstone, not yet complete.
   * Returns how many keys were destroyed (0 when erasing again).
   */
  async destroy(owner: Owner, erasedAt: number): Promise<number> {
    await this.sync();
    const previous = this.follower?.state.erasures.get(ownerId(owner.tenantId, owner.userId));
    const keyIds = [...(this.follower?.state.live.get(ownerId(owner.tenantId, owner.userId))?.keys() ?? [])];
    const tombstone: ErasureTombstone = {
      ...owner,
      erasedAt: Math.max(erasedAt, previous?.erasedAt ?? erasedAt),
      completedAt: null,
      receipt: null,
    };
    // The tombstone first: a reader that sees a key gone also sees that the user was erased.
    await this.write([
      { key: erasureRecordKey(owner), value: erasureValue(tombstone) },
      ...keyIds.map((keyId) => ({ key: keyRecordKey({ ...owner, keyId }), value: null })),
    ]);
    await this.sync();
    return keyIds.length;
  }

  /** Marks the user's latest erasure complete, with its receipt. */
  async complete(owner: Owner, receipt: string, completedAt: number): Promise<void> {
    await this.sync();
    const tombstone = this.follower?.state.erasures.get(ownerId(owner.tenantId, owner.userId));
    if (tombstone === undefined) {
      throw new UnavailableError(
        `kafka: no erasure of user ${owner.userId} of ${owner.tenantId} to complete`,
      );
    }
    await this.write([
      { key: erasureRecordKey(owner), value: erasureValue({ ...tombstone, completedAt, receipt }) },
    ]);
    await this.sync();
  }

  /** The erasure tombstones, of one tenant or of all, by tenant and user. */
  async erasures(tenantId?: string): Promise<ErasureTombstone[]> {
    await this.sync();
    return [...(this.follower?.state.erasures.values() ?? [])]
      .filter((tombstone) => tenantId === undefined || tombstone.tenantId === tenantId)
      .sort((a, b) => compare(a.tenantId, b.tenantId) || compare(a.userId, b.userId));
  }

  async close(): Promise<void> {
    this.closed = true;
    // A reader still starting is waited for briefly (it may be stuck on a broker that is not back).
    const starting = this.starting?.catch(() => null) ?? Promise.resolve(null);
    const follower =
      this.follower ??
      (await withTimeout(starting, 5_000, () => new Error('still starting')).catch(() => null));
    this.follower = null;
    await follower?.stop();
  }

  // ---------------------------------------------------------------------------------------------------

  private get topicName(): string {
    return this.options.topic.topic;
  }

  private async create(owner: Owner): Promise<UserKey> {
    const userKey: UserKey = { ref: { ...owner, keyId: randomUUID() }, key: randomBytes(userKeyBytes) };
    const recordKey = keyRecordKey(userKey.ref);
    const kek = this.options.keyEncryptionKey;
    const stored = kek === undefined ? userKey.key : wrapKey(userKey.key, kek, recordKey);
    await this.write([
      {
        key: recordKey,
        value: Buffer.from(
          JSON.stringify({
            key: stored.toString('base64'),
            createdAt: Date.now(),
            ...(kek === undefined ? {} : { wrapped: true }),
          }),
        ),
      },
    ]);
    // Usable at once here; the reader applies the same record again when it reaches it.
    // Usable here at once, even while this process's reader lags (the record is on the brokers now).
    this.follower?.state.remember(userKey.ref, userKey.key);
    await this.freshen();
    return this.current(owner) ?? userKey;
  }

  private async write(messages: { key: string; value: Buffer | null }[]): Promise<void> {
    try {
      await withTimeout(
        this.options.producer.send({ topic: this.topicName, messages, acks: -1 }),
        this.options.syncTimeoutMs ?? 30_000,
        () => new Error('no answer from the brokers'),
      );
    } catch (error) {
      throw new UnavailableError(`kafka: writing the keyring failed: ${errorMessage(error)}`, error);
    }
  }

  /** The reader, started on first use and again after it crashed. */
  private async running(): Promise<KeyringFollower> {
    if (this.closed) throw new UnavailableError('kafka: the keyring is closed');
    const current = this.follower;
    if (current !== null && current.failure === undefined) return current;
    // A configuration error stays one: a new reader would fail the same way.
    if (current?.failure instanceof LightmemError && !current.failure.retryable) throw current.failure;
    if (this.starting === null) {
      const { kafka, admin, groupPrefix, logger } = this.options;
      this.starting = (async () => {
        await ensureTopics(admin, [this.options.topic]);
        if (current !== null) {
          logger.warn('keyring reader stopped; starting a new one', errorFields(current.failure));
          await current.stop();
        }
        const next = await KeyringFollower.start(
          kafka,
          admin,
          this.topicName,
          groupPrefix,
          logger,
          (owner) => {
            for (const listener of this.listeners) listener(owner);
          },
          this.options.keyEncryptionKey,
        );
        // Serve from the new reader only once it has caught up (the old one's state stays until then).
        try {
          await next.waitFor(
            await partitionEnds(admin, this.topicName),
            this.options.syncTimeoutMs ?? 30_000,
          );
        } catch (error) {
          await next.stop();
          throw error;
        }
        this.follower = next;
        return next;
      })().finally(() => {
        this.starting = null;
      });
    }
    return this.starting;
  }
}

function erasureValue(tombstone: ErasureTombstone): Buffer {
  const { erasedAt, completedAt, receipt } = tombstone;
  return Buffer.from(JSON.stringify({ erasedAt, completedAt, receipt }), 'utf8');
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
