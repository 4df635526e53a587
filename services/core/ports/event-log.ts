import type { TopicName, TopicValues } from '../model/topics.js';

export interface LogRecord<T extends TopicName = TopicName> {
  readonly topic: T;
  /**
   * Position in the topic (the embedded log: 0, 1, 2…; Kafka: within the partition, increasing but not
   * dense, since transaction markers take positions).
   */
  readonly offset: number;
  /** Partition of the topic (the embedded log has one). */
  readonly partition?: number;
  readonly key: string;
  readonly value: TopicValues[T];
  readonly appendedAt: number;
  /** The W3C `traceparent` of the work that appended it (absent when tracing is off). */
  readonly traceContext?: string | undefined;
}

export interface AppendRecord<T extends TopicName = TopicName> {
  readonly key: string;
  readonly value: TopicValues[T];
  /**
   * Idempotency key: a record whose dedupKey is already in the topic is not appended again. Adapters that
   * cannot check this cheaply (Kafka) leave it to the consuming stage, which dedups by the same key.
   */
  readonly dedupKey?: string | undefined;
  /** The W3C `traceparent` of the work that appends it: the stage that reads it continues that trace. */
  readonly traceContext?: string | undefined;
}

export type OutputRecord = { [T in TopicName]: { readonly topic: T } & AppendRecord<T> }[TopicName];

/** A change to a stage's keyed state; `value: null` deletes the key. */
export interface StateWrite {
  readonly key: string;
  readonly value: string | null;
}

/**
 * What a stage produced for a batch. The log commits the output records, the state writes and the
 * consumer offset together (atomically where the adapter can), so a crash never loses or repeats work.
 */
export interface StageOutput {
  readonly records: readonly OutputRecord[];
  readonly state: readonly StateWrite[];
}

export interface StateReader {
  get(key: string): Promise<string | undefined>;
  /** Keys with a prefix (for example every buffered conversation of a stage). */
  keys(prefix: string): Promise<string[]>;
}

export type BatchHandler<T extends TopicName> = (
  records: readonly LogRecord<T>[],
  state: StateReader,
) => Promise<StageOutput>;

export interface ConsumeOptions<T extends TopicName> {
  readonly group: string;
  readonly topic: T;
  readonly signal: AbortSignal;
  readonly batchSize?: number;
}

/** What a topic holds now, and how many records its retention deleted. */
export interface TopicUsage {
  readonly records: number;
  /** Bytes of the record values. */
  readonly bytes: number;
  readonly pruned: number;
}

export interface AppendResult {
  readonly appended: number;
  readonly duplicates: number;
  /** Positions, in the call, of the records not appended because their dedupKey was there. */
  readonly duplicateIndexes: readonly number[];
}

/**
 * What erasing a user removed from the log. A log that deletes records (SQLite) counts them per topic,
 * every topic named (0 included); an append-only log that crypto-shreds (Kafka) names no topic and counts
 * the user's keys it destroyed instead: every record and state value sealed with them, in every topic, is
 * unreadable. State counts name every consumer group that holds keyed state (0 included).
 */
export interface LogErasure {
  readonly records: Readonly<Partial<Record<TopicName, number>>>;
  readonly state: Readonly<Record<string, number>>;
  /** Per-user encryption keys destroyed (crypto-shredding logs only). */
  readonly keys?: number;
}

/** The mark an erased user leaves in the log, so that no replay brings their data back. */
export interface ErasureTombstone {
  readonly tenantId: string;
  readonly userId: string;
  /** Epoch ms of the latest erasure: nothing of this user from before it may be derived again. */
  readonly erasedAt: number;
  /** When every part of the latest erasure finished; null while (or when, after a crash) it has not. */
  readonly completedAt: number | null;
  /** The receipt of the latest erasure (JSON, as the caller gave it to `completeErasure`). */
  readonly receipt: string | null;
}

export interface EventLog {
  append<T extends TopicName>(topic: T, records: readonly AppendRecord<T>[]): Promise<AppendResult>;
  /**
   * Runs the handler over the topic from the group's committed offset until the signal aborts.
   * At-least-once per record, ordered per key; a retryable error is retried with backoff, a
   * non-retryable one isolates the failing record and dead-letters it, and the group goes on.
   */
  consume<T extends TopicName>(options: ConsumeOptions<T>, handler: BatchHandler<T>): Promise<void>;
  /** Replay: records from an offset, in order. */
  read<T extends TopicName>(topic: T, fromOffset: number, limit: number): Promise<LogRecord<T>[]>;
  /** The offset the next appended record will get (= number of records ever appended). */
  endOffset(topic: TopicName): Promise<number>;
  committedOffset(group: string, topic: TopicName): Promise<number>;
  /** What a topic holds now (for stats), or null where the log cannot tell cheaply (Kafka). */
  usage(topic: TopicName): Promise<TopicUsage | null>;
  /** Read-only view of a group's state (for schedulers and stats). */
  stateOf(group: string): StateReader;
  /**
   * Erases one user from the log, atomically: every record of every topic that is about the user (raw and
   * derived records, memory ops, dead letters of their records) with the idempotency keys they carry, and
   * the stage state of the user's conversations; leaves (or renews) the user's tombstone at `erasedAt`.
   * Consumers neither skip nor re-read other records. A stage batch that read the user's records before
   * the erasure and commits after it has its output and state for the user dropped. Idempotent.
   */
  eraseUser(tenantId: string, userId: string, erasedAt: number): Promise<LogErasure>;
  /** Marks the user's latest erasure complete (every store done) and keeps its receipt with the tombstone. */
  completeErasure(tenantId: string, userId: string, receipt: string, completedAt: number): Promise<void>;
  /** The tombstones of erased users (of one tenant, or of every tenant), by tenant and user. */
  erasures(tenantId?: string): Promise<ErasureTombstone[]>;
  close(): Promise<void>;
}
