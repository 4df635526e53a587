import {
  Kafka,
  Partitioners,
  logLevel,
  type Admin,
  type Consumer,
  type Producer,
  type KafkaMessage,
  type LogEntry,
  type TopicMessages,
  type EachBatchPayload,
  type KafkaConfig,
} from 'kafkajs';
import type {
  AppendRecord,
  AppendResult,
  BatchHandler,
  ConsumeOptions,
  ErasureTombstone,
  EventLog,
  LogErasure,
  LogRecord,
  OutputRecord,
  StageOutput,
  StateReader,
} from '../../core/ports/event-log.js';
import type { Logger } from '../../core/ports/logger.js';
import type { Clock } from '../../core/ports/clock.js';
import { topicSchemas, type TopicName } from '../../core/model/topics.js';
import {
  LightmemError,
  UnavailableError,
  errorMessage,
  isRetryable,
  errorFields,
} from '../../core/errors.js';
import {
  batchPolicyOf,
  encodeOnce,
  deadLetterFor,
  runBatch,
  waitWithHeartbeat,
  type BatchPolicy,
} from '../batch-policy.js';
import { RegistryAvroCodec } from './registry-codec.js';
import {
  dataTopicConfigs,
  ensureTopics,
  kafkaTopic,
  keyringTopicConfig,
  stateTopic,
  stateTopicConfig,
  valueSubject,
  type TopicLayout,
} from './kafka-topics.js';
import { UserKeyring, type Owner, type UserKey } from './user-keyring.js';
import { isSealed, seal, sealedRef, unseal, type KeyRef } from './sealed-value.js';
import { recordOwner } from '../../core/model/record-owner.js';
import { stateKeyOwner } from '../../stages/state-keys.js';
import { partitionEnds, readRange } from './kafka-range-reader.js';
import { StageState } from './stage-state.js';
import { disconnectQuietly } from './disconnect.js';
import { backoffMs } from '../../core/backoff.js';
import {
  isKafkaAuthFailure,
  kafkaAuthError,
  kafkaSaslOption,
  kafkaSslOption,
  type KafkaSecurity,
  type RegistrySecurity,
} from './kafka-security.js';

/** The batch policy's fields (retries, back-off, heartbeat) override its defaults. */
export interface KafkaEventLogOptions extends Partial<BatchPolicy> {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly registryUrl: string;
  /** Basic authentication and TLS of the schema registry. */
  readonly registrySecurity?: RegistrySecurity | undefined;
  /** TLS and SASL towards the brokers. */
  readonly security?: KafkaSecurity | undefined;
  readonly topics: TopicLayout;
  /**
   * Stable id of this replica of a stage (e.g. a StatefulSet ordinal): part of the transactional id, so
   * a restarted replica fences its own zombie and aborts its unfinished transaction.
   */
  readonly instanceId: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** How long the broker lets a transaction stay open before aborting it (a crashed stage's batch). */
  readonly transactionTimeoutMs?: number;
  /** Create missing data topics at open (tests, `lightmem admin init`); production creates them once. */
  readonly createTopics?: boolean;
  /**
   * A consumer that neither fetches nor heartbeats for this long, outside a batch, is taken for stalled
   * (kafkajs can stop fetching after a lost connection without reporting a crash): it is stopped with a
   * retryable error, so the stage's supervisor starts a fresh one. Default 120 s.
   */
  readonly stallTimeoutMs?: number;
  /**
   * The consumer's session timeout: a member that sends no heartbeat for this long is taken out of its
   * group and its partitions move (heartbeats go out between fetches and every `heartbeatMs` while a batch
   * runs). Default 30 s; the broker takes 6 s to 30 min (group.min/max.session.timeout.ms).
   */
  readonly sessionTimeoutMs?: number;
}

/**
 * The EventLog on Kafka. Values are Avro in the Confluent wire format against the schema registry. Each
 * consuming stage is one consumer group; a batch's output records, its state changes (a compacted
 * changelog topic, co-partitioned with the input) and its input offsets are committed in one Kafka
 * transaction, so a stage killed at any point neither loses nor repeats work. A restarted stage reloads
 * its state from the changelog before it consumes.
 *
 * Offsets are per partition: `endOffset`/`committedOffset` are sums over the partitions (their difference
 * is the lag), `read` needs a single-partition topic, and positions are not dense (transaction markers
 * take offsets). The dedupKey of an append is not checked here: the consuming stage dedups.
 */
export class KafkaEventLog implements EventLog {
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly producer: Producer;
  private readonly policy: BatchPolicy;
  /** State of groups consumed in this process (kept after the consumer stops: `stateOf` reads it). */
  private readonly states = new Map<string, StageState>();
  private readonly running = new Set<Promise<void>>();
  /** Groups whose consumer runs in this process → the input partitions it owns (its state there is current). */
  private readonly liveGroups = new Map<string, Set<number>>();
  private readonly keyring: UserKeyring;
  /**
   * Values sealed with a key this process never saw, not even destroyed: an erasure's tombstone already
   * compacted away (after a day), or a keyring topic that was lost. Read as erased either way; reported.
   */
  private readonly unknownKeys: UnknownKeyReport;
  private closed = false;

  private constructor(
    private readonly options: KafkaEventLogOptions,
    private readonly codec: RegistryAvroCodec,
    kafka: Kafka,
    admin: Admin,
    producer: Producer,
    private readonly keyringProducer: Producer,
  ) {
    this.kafka = kafka;
    this.admin = admin;
    this.producer = producer;
    this.policy = batchPolicyOf(options);
    this.unknownKeys = new UnknownKeyReport(options.logger);
    this.keyring = new UserKeyring({
      kafka,
      admin,
      producer: keyringProducer,
      topic: keyringTopicConfig(options.topics),
      // The keyring's readers are named after the keyring, not after a version's topics that share it.
      groupPrefix: options.topics.keyringPrefix ?? options.topics.prefix,
      logger: options.logger,
      keyEncryptionKey:
        options.security?.keyEncryptionKey === undefined
          ? undefined
          : Buffer.from(options.security.keyEncryptionKey, 'base64'),
    });
    // An erased user's state leaves the memory of every stage here as soon as the erasure is read.
    this.keyring.onDestroyed((owner) => {
      for (const state of this.states.values()) state.dropOwned(owner);
    });
  }

  static async open(options: KafkaEventLogOptions): Promise<KafkaEventLog> {
    const kafka = kafkaClient(options.brokers, options.clientId, options.logger, options.security);
    const admin = kafka.admin();
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // Java-compatible murmur2 on the key: a conversation's records land where a Java producer puts them.
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    // The keyring's own producer (see UserKeyringOptions.producer): one partition, writes idempotent anyway.
    const keyringProducer = kafka.producer({ allowAutoTopicCreation: false, maxInFlightRequests: 1 });
    try {
      await admin.connect();
      if (options.createTopics === true) await ensureTopics(admin, dataTopicConfigs(options.topics));
      await producer.connect();
      await keyringProducer.connect();
    } catch (error) {
      await disconnectQuietly(keyringProducer);
      await disconnectQuietly(producer);
      await disconnectQuietly(admin);
      if (error instanceof LightmemError) throw error;
      if (isKafkaAuthFailure(error)) throw kafkaAuthError(options.brokers, error);
      throw new UnavailableError(
        `kafka: cannot connect to ${options.brokers.join(',')}: ${errorMessage(error)}`,
        error,
      );
    }
    let codec: RegistryAvroCodec;
    try {
      codec = await RegistryAvroCodec.open(
        {
          url: options.registryUrl,
          subjectOf: (topic) => valueSubject(options.topics, topic),
          security: options.registrySecurity,
        },
        Object.keys(topicSchemas) as TopicName[],
      );
    } catch (error) {
      await disconnectQuietly(keyringProducer);
      await disconnectQuietly(producer);
      await disconnectQuietly(admin);
      throw error;
    }
    return new KafkaEventLog(options, codec, kafka, admin, producer, keyringProducer);
  }

  async append<T extends TopicName>(topic: T, records: readonly AppendRecord<T>[]): Promise<AppendResult> {
    if (records.length === 0) return { appended: 0, duplicates: 0, duplicateIndexes: [] };
    // Encode first: a record that does not match its schema fails the call before anything is sent.
    const encoded = records.map((record) => ({
      key: record.key,
      value: this.codec.encode(topic, record.value),
      owner: ownerOf(recordOwner(topic, record.value)),
      headers: traceHeaders(record.traceContext),
    }));
    // Read the keyring up to now first (briefly): a user erased a moment ago elsewhere gets a new key.
    if (encoded.some((record) => record.owner !== null)) await this.keyring.freshen();
    const messages: { key: string; value: Buffer; headers?: Record<string, string> }[] = [];
    for (const record of encoded) {
      const value = await this.sealFor(record.owner, record.value, new Map());
      messages.push({ key: record.key, value, ...record.headers });
    }
    try {
      await this.producer.send({ topic: kafkaTopic(this.options.topics, topic), messages, acks: -1 });
    } catch (error) {
      throw new UnavailableError(`kafka: append to ${topic} failed: ${errorMessage(error)}`, error);
    }
    return { appended: records.length, duplicates: 0, duplicateIndexes: [] };
  }

  async read<T extends TopicName>(topic: T, fromOffset: number, limit: number): Promise<LogRecord<T>[]> {
    const name = kafkaTopic(this.options.topics, topic);
    const ends = await partitionEnds(this.admin, name);
    if (ends.length !== 1) {
      throw new LightmemError(
        'invalid_input',
        `read by offset needs a single-partition topic; ${name} has ${ends.length} partitions`,
      );
    }
    const messages: KafkaMessage[] = [];
    if (limit <= 0) return [];
    await readRange(this.kafka, this.admin, name, {
      from: new Map([[0, fromOffset]]),
      onMessage: (_partition, message) => {
        messages.push(message);
        return messages.length >= limit;
      },
    });
    await this.knowKeysOf(messages.map((message) => message.value));
    const out: LogRecord<T>[] = [];
    for (const message of messages) {
      const record = await this.decodeMessage(topic, message);
      if (record !== null) out.push(record);
    }
    return out;
  }

  /**
   * Every readable record of a topic (all partitions, in order within each) up to its end now, handed to
   * `visit` a chunk at a time (a replay `--since` looks for the sessions active since then). Each chunk is
   * one throwaway reader; a destroyed key's records are skipped.
   */
  async scan<T extends TopicName>(
    topic: T,
    visit: (records: LogRecord<T>[]) => void | Promise<void>,
    chunk = 10_000,
  ): Promise<void> {
    const name = kafkaTopic(this.options.topics, topic);
    const from = new Map<number, number>();
    for (;;) {
      const messages: KafkaMessage[] = [];
      await readRange(this.kafka, this.admin, name, {
        from,
        onMessage: (partition, message) => {
          messages.push(message);
          from.set(partition, Number(message.offset) + 1);
          return messages.length >= chunk;
        },
      });
      if (messages.length === 0) return;
      await this.knowKeysOf(messages.map((message) => message.value));
      const records: LogRecord<T>[] = [];
      for (const message of messages) {
        const record = await this.decodeMessage(topic, message);
        if (record !== null) records.push(record);
      }
      await visit(records);
      if (messages.length < chunk) return;
    }
  }

  async endOffset(topic: TopicName): Promise<number> {
    const ends = await partitionEnds(this.admin, kafkaTopic(this.options.topics, topic));
    return ends.reduce((sum, e) => sum + e.end, 0);
  }

  /** Kafka keeps sizes per log segment on the brokers; the topic's retention bounds them. */
  usage(): Promise<null> {
    return Promise.resolve(null);
  }

  async committedOffset(group: string, topic: TopicName): Promise<number> {
    try {
      const [offsets] = await this.admin.fetchOffsets({
        groupId: this.groupId(group),
        topics: [kafkaTopic(this.options.topics, topic)],
      });
      return (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
    } catch (error) {
      throw new UnavailableError(
        `kafka: reading the offsets of group ${group} failed: ${errorMessage(error)}`,
        error,
      );
    }
  }

  /**
   * Kafka topics are append-only: erasure is crypto-shredding. Every record and state value about a user is
   * sealed with one of their keys (see `UserKeyring`); erasing destroys the keys, so every copy in every
   * topic is unreadable (readers skip it: a stage never sees it, a replay cannot derive from it). The
   * user's stage state is also deleted from each changelog (compaction removes it) and from the memory of
   * the stages (here at once, elsewhere as soon as their keyring reader reads the erasure).
   */
  async eraseUser(tenantId: string, userId: string, erasedAt: number): Promise<LogErasure> {
    const owner: Owner = { tenantId, userId };
    const keys = await this.keyring.destroy(owner, erasedAt);
    for (const state of this.states.values()) state.dropOwned(owner);
    return { records: {}, state: await this.eraseStateOf(owner), keys };
  }

  completeErasure(tenantId: string, userId: string, receipt: string, completedAt: number): Promise<void> {
    return this.keyring.complete({ tenantId, userId }, receipt, completedAt);
  }

  erasures(tenantId?: string): Promise<ErasureTombstone[]> {
    return this.keyring.erasures(tenantId);
  }

  /** Members of a consumer group once it is stable (0 while it has none or is rebalancing). */
  async stableMembers(group: string): Promise<number> {
    try {
      const { groups } = await this.admin.describeGroups([this.groupId(group)]);
      const [described] = groups;
      return described?.state === 'Stable' ? described.members.length : 0;
    } catch (error) {
      throw new UnavailableError(`kafka: describing group ${group} failed: ${errorMessage(error)}`, error);
    }
  }

  /**
   * A group's committed state. While the group consumes in this process, only the partitions it owns
   * (a scheduler here must not act on conversations another replica owns); otherwise all of it, reloaded
   * from the changelog when it moved.
   */
  stateOf(group: string): StateReader {
    return {
      get: async (key) => (await this.currentState(group)).get(key, this.liveGroups.get(group)),
      keys: async (prefix) => (await this.currentState(group)).keys(prefix, this.liveGroups.get(group)),
    };
  }

  async consume<T extends TopicName>(options: ConsumeOptions<T>, handler: BatchHandler<T>): Promise<void> {
    if (options.signal.aborted || this.closed) return;
    const run = this.runConsumer(options, handler);
    this.running.add(run);
    try {
      await run;
    } finally {
      this.running.delete(run);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.running]);
    await this.keyring.close();
    await disconnectQuietly(this.keyringProducer);
    await disconnectQuietly(this.producer);
    await disconnectQuietly(this.admin);
    await this.codec.close().catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------------

  /** The Kafka consumer group of a stage: prefixed like the topics, so deployments sharing a cluster never mix. */
  private groupId(group: string): string {
    return `${this.options.topics.prefix}${group}`;
  }

  /** A record, or null when it is sealed with a destroyed key (its user was erased). */
  private async decodeMessage<T extends TopicName>(
    topic: T,
    message: KafkaMessage,
    partition = 0,
  ): Promise<LogRecord<T> | null> {
    if (message.value === null) throw new LightmemError('invalid_input', `a ${topic} record has no value`);
    const plain = this.opened(message.value);
    if (plain === null) return null;
    return {
      topic,
      offset: Number(message.offset),
      partition,
      key: message.key?.toString('utf8') ?? '',
      value: await this.codec.decode(topic, plain),
      appendedAt: Number(message.timestamp),
      ...traceContextOf(message),
    };
  }

  /** A value as written before it was sealed; null when its key was destroyed. */
  private opened(value: Buffer): Buffer | null {
    if (!isSealed(value)) return value;
    const ref = sealedRef(value);
    const key = this.keyring.keyOf(ref);
    if (key !== undefined) return unseal(value, key);
    if (!this.keyring.knows(ref)) this.unknownKeys.report(ref);
    return null;
  }

  /**
   * A changelog value as the stage wrote it; null (the key reads as absent) when its key was destroyed, or
   * when it does not open: one unreadable value must not keep the stage from starting.
   */
  private openedState(group: string, key: string, value: Buffer): Buffer | null {
    try {
      return this.opened(value);
    } catch (error) {
      this.options.logger.warn('a stage state value does not open; the key reads as absent', {
        group,
        key,
        ...errorFields(error),
      });
      return null;
    }
  }

  /** The key a sealed value names, if it is live here (the batch's outputs for its user reuse it). */
  private liveKeyOf(value: Buffer | null): UserKey | null {
    const ref = refOf(value);
    const key = ref === null ? undefined : this.keyring.keyOf(ref);
    return ref === null || key === undefined ? null : { ref, key };
  }

  /** Reads the keyring up to now when a value names a key this process has not read yet (one read per call). */
  private async knowKeysOf(values: readonly (Buffer | null)[]): Promise<void> {
    const unknown = values.some((value) => {
      const ref = refOf(value);
      return ref !== null && !this.keyring.knows(ref);
    });
    if (unknown) await this.keyring.sync();
  }

  /**
   * Seals a value about a user: with the key the batch's input for that user was sealed with (so what a
   * batch derives from records read before an erasure is as unreadable as they are), else with a key the
   * user has now. A value about no user stays plain.
   */
  private async sealFor(
    owner: Owner | null,
    plain: Buffer,
    inputKeys: ReadonlyMap<string, UserKey>,
  ): Promise<Buffer> {
    if (owner === null) return plain;
    const userKey = inputKeys.get(ownerKey(owner)) ?? (await this.keyring.keyFor(owner));
    return seal(plain, userKey.ref, userKey.key);
  }

  /** Deletes the user's keys from every stage's changelog; how many per group (0 included). */
  private async eraseStateOf(owner: Owner): Promise<Record<string, number>> {
    const prefix = stateTopic(this.options.topics, '');
    let topics: string[];
    try {
      topics = (await this.admin.listTopics()).filter((name) => name.startsWith(prefix)).sort();
    } catch (error) {
      throw new UnavailableError(`kafka: listing topics failed: ${errorMessage(error)}`, error);
    }
    const counts: Record<string, number> = {};
    for (const topic of topics) {
      // The latest value of each of the user's keys, per partition: the live ones get a tombstone.
      const latest = new Map<string, { key: string; partition: number; live: boolean }>();
      await readRange(this.kafka, this.admin, topic, {
        onMessage: (partition, message) => {
          const key = message.key?.toString('utf8') ?? '';
          const keyOwner = stateKeyOwner(key);
          if (keyOwner?.tenantId === owner.tenantId && keyOwner.userId === owner.userId) {
            latest.set(JSON.stringify([partition, key]), { key, partition, live: message.value !== null });
          }
          return false;
        },
      });
      const live = [...latest.values()].filter((entry) => entry.live);
      if (live.length > 0) {
        try {
          await this.producer.send({
            topic,
            messages: live.map((entry) => ({ key: entry.key, value: null, partition: entry.partition })),
            acks: -1,
          });
        } catch (error) {
          throw new UnavailableError(
            `kafka: deleting state from ${topic} failed: ${errorMessage(error)}`,
            error,
          );
        }
      }
      counts[topic.slice(prefix.length)] = live.length;
    }
    return counts;
  }

  /** The group's committed state: from this process when it consumes it, else reloaded from the changelog. */
  private async currentState(group: string): Promise<StageState> {
    const name = stateTopic(this.options.topics, group);
    const known = this.states.get(group);
    if (known !== undefined && this.liveGroups.has(group)) return known;
    const topics = await this.admin.listTopics();
    if (!topics.includes(name)) return known ?? new StageState();
    const ends = await partitionEnds(this.admin, name);
    if (known !== undefined && known.isAt(ends)) return known;
    const state = await this.restoreState(group);
    this.states.set(group, state);
    return state;
  }

  private async restoreState(group: string): Promise<StageState> {
    const state = new StageState();
    const name = stateTopic(this.options.topics, group);
    const changes: { partition: number; key: string; value: Buffer | null }[] = [];
    await readRange(this.kafka, this.admin, name, {
      onMessage: (partition, message) => {
        changes.push({ partition, key: message.key?.toString('utf8') ?? '', value: message.value });
        return false;
      },
    });
    await this.knowKeysOf(changes.map((change) => change.value));
    // A value sealed with a destroyed key is an erased user's: it reads as deleted.
    for (const { partition, key, value } of changes) {
      state.applyChangelog(partition, key, value === null ? null : this.openedState(group, key, value));
    }
    state.markAt(await partitionEnds(this.admin, name));
    return state;
  }

  private async runConsumer<T extends TopicName>(
    options: ConsumeOptions<T>,
    handler: BatchHandler<T>,
  ): Promise<void> {
    const { group, topic, signal } = options;
    const batchSize = options.batchSize ?? 256;
    const layout = this.options.topics;
    const inputTopic = kafkaTopic(layout, topic);
    const changelog = stateTopic(layout, group);
    const logger = this.options.logger.child({ group, topic });
    // Start-up, retried while the cluster is not ready (a topic just created has no leader yet, a broker
    // is restarting). The transactional producer first: initialising it fences an older instance with the
    // same id and aborts its open transaction, so the state read next is final.
    const started = await this.retryingStartUp(signal, logger, async () => {
      await ensureTopics(this.admin, [stateTopicConfig(layout, group)]);
      const transactional = await this.transactionalProducer(group);
      try {
        return { producer: transactional, state: await this.restoreState(group) };
      } catch (error) {
        await disconnectQuietly(transactional);
        throw error;
      }
    });
    if (started === null) return;
    let { producer, state } = started;
    this.states.set(group, state);
    if (signal.aborted) {
      await disconnectQuietly(producer);
      return;
    }
    const owned = new Set<number>();
    this.liveGroups.set(group, owned);

    const consumer: Consumer = this.kafka.consumer({
      groupId: this.groupId(group),
      readUncommitted: false,
      sessionTimeout: this.options.sessionTimeoutMs ?? 30_000,
      // Members heartbeat between fetches: short fetch waits keep rebalances fast (~0.1 s, not ~5 s).
      heartbeatInterval: 500,
      maxWaitTimeInMs: 100,
      allowAutoTopicCreation: false,
      retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 2_000 },
    });
    let joins = 0;
    let needsRestore = false;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      owned.clear();
      for (const partition of event.payload.memberAssignment[inputTopic] ?? []) owned.add(partition);
      // After a rebalance this member may own partitions whose state another member wrote meanwhile.
      if (++joins > 1) needsRestore = true;
    });
    let crashed: unknown = undefined;
    let wake: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => {
      wake = resolve;
    });
    consumer.on(consumer.events.CRASH, (event) => {
      if (!event.payload.restart) {
        crashed = event.payload.error;
        wake();
      }
    });
    const onAbort = (): void => wake();
    signal.addEventListener('abort', onAbort, { once: true });

    // Liveness: any fetch, heartbeat, join or batch counts; a batch in hand is never a stall.
    const stallMs = this.options.stallTimeoutMs ?? 120_000;
    let lastSign = Date.now();
    let inBatch = false;
    const alive = (): void => {
      lastSign = Date.now();
    };
    for (const event of [
      consumer.events.FETCH_START,
      consumer.events.HEARTBEAT,
      consumer.events.GROUP_JOIN,
      consumer.events.END_BATCH_PROCESS,
    ]) {
      consumer.on(event, alive);
    }
    const watchdog = setInterval(
      () => {
        if (inBatch || crashed !== undefined || Date.now() - lastSign < stallMs) return;
        logger.warn('consumer stalled: no fetch or heartbeat; restarting it', { stallMs });
        crashed = new Error(`no fetch or heartbeat for ${stallMs / 1000} s (stalled consumer)`);
        wake();
      },
      Math.min(5_000, Math.max(10, stallMs / 4)),
    );

    // Output is encoded once, when runBatch checks it against its schema; the commit (and its retries)
    // reuse the bytes. Dead letters made after the check are encoded on demand.
    const encode = encodeOnce((record) => this.codec.encode(record.topic, record.value));
    const checkOutput = (output: StageOutput): void => {
      for (const record of output.records) encode(record);
    };

    const eachBatch = async (payload: EachBatchPayload): Promise<void> => {
      const { batch } = payload;
      const heartbeat = (): Promise<void> => payload.heartbeat();
      if (needsRestore) {
        needsRestore = false;
        state = await this.restoreState(group);
        this.states.set(group, state);
        await heartbeat();
      }
      const messages = batch.messages;
      const lastOffset = Number(batch.lastOffset());
      for (
        let start = 0;
        start < messages.length || (start === 0 && messages.length === 0);
        start += batchSize
      ) {
        if (signal.aborted || !payload.isRunning() || payload.isStale()) return;
        const chunk = messages.slice(start, start + batchSize);
        const isLast = start + batchSize >= messages.length;
        const next = isLast ? lastOffset + 1 : Number(chunk.at(-1)?.offset ?? lastOffset) + 1;
        const view = state.reader();
        const { records, undecodable, inputKeys } = await this.decodeChunk(
          topic,
          batch.partition,
          chunk,
          group,
        );
        let output: StageOutput | null = { records: undecodable, state: [] };
        if (records.length > 0) {
          const handled = await runBatch(records, handler, view, {
            group,
            signal,
            logger,
            clock: this.options.clock,
            policy: this.policy,
            check: checkOutput,
            heartbeat,
          });
          if (handled === null) return;
          output = { records: [...undecodable, ...handled.records], state: handled.state };
        }
        const sealed = await this.sealOutput(output, encode, inputKeys);
        // Commit output + state + offset atomically; a failed commit is retried with the same output
        // (the state is applied in memory only after the commit succeeded).
        // On SIGTERM the batch in hand is still committed once; only the retries stop.
        for (let attempt = 1; ; attempt++) {
          if (signal.aborted && attempt > 1) return;
          try {
            await this.commitTransaction(
              producer,
              group,
              inputTopic,
              changelog,
              batch.partition,
              next,
              sealed,
              state.movedKeys(batch.partition, output.state),
            );
            break;
          } catch (error) {
            if (isFencedError(error)) {
              // As Kafka Streams does on a fenced producer: drop the batch and rejoin (the supervisor
              // restarts the stage). Either a newer instance with our transactional id owns the work now,
              // or the broker aborted our transaction; the uncommitted batch is redone by its owner.
              throw new LightmemError(
                'conflict',
                `stage ${group}: fenced — another instance with transactional id ${this.transactionalId(group)} took over, or the broker aborted the transaction (${errorMessage(error)})`,
                { retryable: true },
              );
            }
            const delay = backoffMs(
              attempt,
              this.policy.retryBaseMs,
              this.policy.retryMaxMs,
              this.policy.jitter,
            );
            logger.warn('commit failed, retrying', {
              attempt,
              delayMs: delay,
              ...errorFields(error),
            });
            await disconnectQuietly(producer);
            await waitWithHeartbeat(delay, { signal, heartbeat, policy: this.policy });
            if (signal.aborted) return;
            producer = await this.transactionalProducer(group).catch((reconnectError: unknown) => {
              logger.warn('transactional producer reconnect failed', {
                ...errorFields(reconnectError),
              });
              return producer;
            });
          }
        }
        // A write sealed with a key destroyed meanwhile is an erased user's: not kept in memory either.
        state.apply(
          batch.partition,
          output.state.map((write, index) => {
            const ref = sealed.stateRefs[index] ?? null;
            return ref !== null && this.keyring.keyOf(ref) === undefined
              ? { key: write.key, value: null }
              : write;
          }),
        );
        payload.resolveOffset(String(next - 1));
        await heartbeat();
      }
    };

    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [inputTopic], fromBeginning: true });
      await consumer.run({
        autoCommit: true,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch: async (payload) => {
          inBatch = true;
          try {
            await eachBatch(payload);
          } finally {
            inBatch = false;
            alive();
          }
        },
      });
      await stopped;
    } finally {
      clearInterval(watchdog);
      this.liveGroups.delete(group);
      signal.removeEventListener('abort', onAbort);
      await disconnectQuietly(consumer);
      await disconnectQuietly(producer);
    }
    if (crashed !== undefined) {
      throw new UnavailableError(
        `kafka: consumer ${group} on ${topic} stopped: ${errorMessage(crashed)}`,
        crashed,
      );
    }
  }

  /** Runs a start-up step until it succeeds, retrying retryable failures with backoff; null when aborted. */
  private async retryingStartUp<R>(
    signal: AbortSignal,
    logger: Logger,
    step: () => Promise<R>,
  ): Promise<R | null> {
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return null;
      try {
        return await step();
      } catch (error) {
        if (!isRetryable(error)) throw error;
        const delay = backoffMs(attempt, this.policy.retryBaseMs, this.policy.retryMaxMs, this.policy.jitter);
        logger.warn('stage start-up failed, retrying', {
          attempt,
          delayMs: delay,
          ...errorFields(error),
        });
        await waitWithHeartbeat(delay, { signal, policy: this.policy });
      }
    }
  }

  private async decodeChunk<T extends TopicName>(
    topic: T,
    partition: number,
    messages: readonly KafkaMessage[],
    group: string,
  ): Promise<{ records: LogRecord<T>[]; undecodable: OutputRecord[]; inputKeys: Map<string, UserKey> }> {
    const records: LogRecord<T>[] = [];
    const undecodable: OutputRecord[] = [];
    const inputKeys = new Map<string, UserKey>();
    await this.knowKeysOf(messages.map((message) => message.value));
    for (const message of messages) {
      try {
        const record = await this.decodeMessage(topic, message, partition);
        // Sealed with a destroyed key: its user was erased, and so is the record (skipped, not dead-lettered).
        if (record === null) continue;
        records.push(record);
        const userKey = this.liveKeyOf(message.value);
        if (userKey !== null) inputKeys.set(ownerKey(userKey.ref), userKey);
      } catch (error) {
        if (!(error instanceof LightmemError) || error.retryable) throw error;
        this.options.logger.error('record dead-lettered: it does not decode', {
          group,
          topic,
          offset: message.offset,
          error: error.message,
        });
        const raw: LogRecord = {
          topic,
          offset: Number(message.offset),
          partition,
          key: message.key?.toString('utf8') ?? '',
          value: { undecodable: message.value?.toString('base64') ?? null } as never,
          appendedAt: Number(message.timestamp),
        };
        undecodable.push(deadLetterFor(group, raw, error, 1, this.options.clock.now()));
      }
    }
    return { records, undecodable, inputKeys };
  }

  /** A batch's output as it is committed: every value about a user sealed (see `sealFor`). */
  private async sealOutput(
    output: StageOutput,
    encode: (record: OutputRecord) => Buffer,
    inputKeys: ReadonlyMap<string, UserKey>,
  ): Promise<SealedOutput> {
    const records: SealedOutput['records'] = [];
    for (const record of output.records) {
      const owner = ownerOf(recordOwner(record.topic, record.value as never));
      records.push({
        topic: record.topic,
        key: record.key,
        value: await this.sealFor(owner, encode(record), inputKeys),
        traceContext: record.traceContext,
      });
    }
    const state: SealedOutput['state'] = [];
    const stateRefs: (KeyRef | null)[] = [];
    for (const write of output.state) {
      const owner = stateKeyOwner(write.key);
      if (write.value === null || owner === null) {
        state.push({ key: write.key, value: write.value === null ? null : Buffer.from(write.value, 'utf8') });
        stateRefs.push(null);
        continue;
      }
      const value = await this.sealFor(owner, Buffer.from(write.value, 'utf8'), inputKeys);
      state.push({ key: write.key, value });
      stateRefs.push(sealedRef(value));
    }
    return { records, state, stateRefs };
  }

  private transactionalId(group: string): string {
    return `${this.options.topics.prefix}lightmem.${group}.${this.options.instanceId}`;
  }

  private async transactionalProducer(group: string): Promise<Producer> {
    const producer = this.kafka.producer({
      transactionalId: this.transactionalId(group),
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
      transactionTimeout: this.options.transactionTimeoutMs ?? 60_000,
      allowAutoTopicCreation: false,
      // Right after a commit the broker briefly answers "concurrent transactions": retry fast, not after 300 ms.
      retry: { retries: 30, initialRetryTime: 20, maxRetryTime: 2_000 },
    });
    try {
      await producer.connect();
    } catch (error) {
      if (isKafkaAuthFailure(error)) throw kafkaAuthError(this.options.brokers, error);
      throw new UnavailableError(
        `kafka: transactional producer for ${group} failed to start: ${errorMessage(error)}`,
        error,
      );
    }
    return producer;
  }

  private async commitTransaction(
    producer: Producer,
    group: string,
    inputTopic: string,
    changelog: string,
    partition: number,
    nextOffset: number,
    output: SealedOutput,
    /** State keys this batch writes whose old value is in another partition: deleted there. */
    moved: readonly { readonly key: string; readonly partition: number }[],
  ): Promise<void> {
    const byTopic = new Map<string, { key: string; value: Buffer; headers?: Record<string, string> }[]>();
    for (const record of output.records) {
      const name = kafkaTopic(this.options.topics, record.topic);
      const list = byTopic.get(name) ?? [];
      list.push({ key: record.key, value: record.value, ...traceHeaders(record.traceContext) });
      byTopic.set(name, list);
    }
    const transaction = await producer.transaction();
    try {
      const topicMessages: TopicMessages[] = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
      if (output.state.length > 0) {
        // A null value is a tombstone: compaction drops the key.
        topicMessages.push({
          topic: changelog,
          messages: [
            ...moved.map((old) => ({ key: old.key, value: null, partition: old.partition })),
            ...output.state.map((write) => ({ key: write.key, value: write.value, partition })),
          ],
        });
      }
      if (topicMessages.length > 0) await transaction.sendBatch({ topicMessages, acks: -1 });
      await transaction.sendOffsets({
        consumerGroupId: this.groupId(group),
        topics: [{ topic: inputTopic, partitions: [{ partition, offset: String(nextOffset) }] }],
      });
      await transaction.commit();
    } catch (error) {
      await transaction.abort().catch(() => undefined);
      throw error;
    }
  }
}

/** A warning, at most once a minute, with how many values named keys this process never saw. */
class UnknownKeyReport {
  private count = 0;
  private lastAt = 0;

  constructor(private readonly logger: Logger) {}

  report(ref: KeyRef): void {
    this.count++;
    const now = Date.now();
    if (now - this.lastAt < 60_000) return;
    this.logger.warn(
      'records sealed with user keys this process never saw were read as erased (keys destroyed over a day ago, or the keyring topic was lost: check it if no user was erased)',
      { records: this.count, tenantId: ref.tenantId, userId: ref.userId, keyId: ref.keyId },
    );
    this.count = 0;
    this.lastAt = now;
  }
}

/** A batch's output records and state writes as committed: values sealed, each state write's key reference. */
interface SealedOutput {
  readonly records: {
    readonly topic: TopicName;
    readonly key: string;
    readonly value: Buffer;
    readonly traceContext: string | undefined;
  }[];
  readonly state: { readonly key: string; readonly value: Buffer | null }[];
  readonly stateRefs: (KeyRef | null)[];
}

/** The key reference of a sealed value; null for a plain one (or a malformed one: its reader says so). */
function refOf(value: Buffer | null): KeyRef | null {
  if (value === null || !isSealed(value)) return null;
  try {
    return sealedRef(value);
  } catch {
    return null;
  }
}

/** A record's owner when it names both tenant and user (what is sealed); null otherwise (stays plain). */
function ownerOf(owner: { tenantId: string | null; userId: string | null }): Owner | null {
  return owner.tenantId === null || owner.userId === null
    ? null
    : { tenantId: owner.tenantId, userId: owner.userId };
}

function ownerKey(owner: Owner): string {
  return JSON.stringify([owner.tenantId, owner.userId]);
}

function isFencedError(error: unknown): boolean {
  const type = typeof error === 'object' && error !== null && 'type' in error ? String(error.type) : '';
  return (
    type === 'INVALID_PRODUCER_EPOCH' ||
    type === 'PRODUCER_FENCED' ||
    type === 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED'
  );
}

/**
 * A kafkajs client whose logs go to our logger (its INFO chatter at debug), with the TLS and SASL of
 * `security` (PEM files are read here: an unreadable one fails with a config error naming its setting).
 */
export function kafkaClient(
  brokers: readonly string[],
  clientId: string,
  logger: Logger,
  security?: KafkaSecurity,
): Kafka {
  return new Kafka(kafkaClientOptions(brokers, clientId, logger, security));
}

/** The options of `kafkaClient`'s kafkajs client. */
export function kafkaClientOptions(
  brokers: readonly string[],
  clientId: string,
  logger: Logger,
  security?: KafkaSecurity,
): KafkaConfig {
  const log = logger.child({ component: 'kafkajs' });
  const ssl = kafkaSslOption(security?.ssl);
  const sasl = kafkaSaslOption(security?.sasl);
  return {
    clientId,
    brokers: [...brokers],
    ...(ssl === undefined ? {} : { ssl }),
    ...(sasl === undefined ? {} : { sasl }),
    connectionTimeout: 3_000,
    requestTimeout: 30_000,
    // A broker restart takes seconds: retry long enough to ride it out.
    retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 2_000 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const fields = {
          namespace: String(entry.logger ?? ''),
          error: entry['error'] === undefined ? undefined : String(entry['error']),
        };
        if (level <= logLevel.ERROR) log.warn(`kafka: ${entry.message}`, fields);
        else log.debug(`kafka: ${entry.message}`, fields);
      },
  };
}

/** The W3C `traceparent` header of a record that continues a trace (none when tracing is off). */
function traceHeaders(traceContext: string | undefined): { headers?: Record<string, string> } {
  return traceContext === undefined ? {} : { headers: { traceparent: traceContext } };
}

/** The trace a consumed record continues: its `traceparent` header, when it has one. */
function traceContextOf(message: KafkaMessage): { traceContext?: string } {
  const header = message.headers?.['traceparent'];
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return {};
  const text = typeof value === 'string' ? value : value.toString('utf8');
  return text === '' ? {} : { traceContext: text };
}
