import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
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
  TopicUsage,
} from '../../core/ports/event-log.js';
import type { Logger } from '../../core/ports/logger.js';
import type { Clock } from '../../core/ports/clock.js';
import type { TopicName } from '../../core/model/topics.js';
import { LightmemError, RetriesExhaustedError, isRetryable, errorFields } from '../../core/errors.js';
import { AvroCodec } from './avro-codec.js';
import { batchPolicyOf, encodeOnce, runBatch, type BatchPolicy } from '../batch-policy.js';
import {
  checkpointAfterErasure,
  isTransientSqliteError,
  migrate,
  openDatabase,
  storageError,
  writeTransaction,
  type Migration,
  type SqliteDatabase,
} from './database.js';
import { backoffMs } from '../../core/backoff.js';
import { Topics } from '../../core/model/topics.js';
import { eventDedupKey } from '../../core/model/keys.js';
import type { ConversationEvent } from '../../core/model/generated.js';
import { recordOwner, type RecordOwner } from '../../core/model/record-owner.js';
import { SqliteLogErasure, addRecordOwners, unfencedState, type ErasureFence } from './sqlite-log-erasure.js';

const migrations: Migration[] = [
  `
  CREATE TABLE records (
    topic TEXT NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    schema_fp TEXT NOT NULL,
    dedup_key TEXT,
    appended_at INTEGER NOT NULL,
    PRIMARY KEY (topic, offset)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX records_dedup ON records (topic, dedup_key) WHERE dedup_key IS NOT NULL;
  CREATE TABLE topic_ends (topic TEXT PRIMARY KEY, next_offset INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE consumer_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, offset INTEGER NOT NULL, PRIMARY KEY (grp, topic)
  ) WITHOUT ROWID;
  CREATE TABLE stage_state (grp TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (grp, key))
    WITHOUT ROWID;
  CREATE TABLE writer_schemas (fingerprint TEXT PRIMARY KEY, schema TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE owners (name TEXT PRIMARY KEY, pid INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL) WITHOUT ROWID;
  `,
  rewriteEventKeys,
  `
  ALTER TABLE owners ADD COLUMN status TEXT NOT NULL DEFAULT '';
  CREATE TABLE topic_usage (
    topic TEXT PRIMARY KEY, records INTEGER NOT NULL, bytes INTEGER NOT NULL, pruned INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO topic_usage (topic, records, bytes, pruned)
    SELECT topic, COUNT(*), COALESCE(SUM(length(value)), 0), 0 FROM records GROUP BY topic;
  `,
  addRecordOwners,
  // 5: the trace context of each record (a W3C traceparent; null when tracing was off).
  `ALTER TABLE records ADD COLUMN trace_context TEXT;`,
];

/**
 * Migration 2: idempotency keys of events in the unambiguous form of `eventDedupKey`. Version 1 joined
 * tenant, user, conversation and turn id with '/', which ids may contain, so two different turns could
 * share a key (the second was taken for a duplicate and dropped), and gave control events keys in the
 * turns' namespace (a turn could pre-empt a session end). Only keys that can differ are rewritten: those
 * of ids with '/' (more than three separators) and of control events; keys of plain ids are the same in
 * both forms.
 */
function rewriteEventKeys(db: SqliteDatabase): void {
  const schema = db.prepare<[string], { schema: string }>(
    'SELECT schema FROM writer_schemas WHERE fingerprint = ?',
  );
  const codec = new AvroCodec((fingerprint) => schema.get(fingerprint)?.schema);
  const rows = db
    .prepare<
      [string, string],
      { topic: string; offset: number; value: Buffer; schema_fp: string; dedup_key: string }
    >(
      `SELECT topic, offset, value, schema_fp, dedup_key FROM records
       WHERE topic IN (?, ?) AND dedup_key IS NOT NULL
         AND (dedup_key LIKE '%/%/%/%/%' OR dedup_key LIKE '%session-end:%' OR dedup_key LIKE '%flush-after:%')`,
    )
    .all(Topics.raw, Topics.compressed);
  const update = db.prepare<[string | null, string, number]>(
    'UPDATE records SET dedup_key = ? WHERE topic = ? AND offset = ?',
  );
  for (const row of rows) {
    const event: ConversationEvent =
      row.topic === Topics.raw
        ? codec.decode(Topics.raw, row.value, row.schema_fp)
        : codec.decode(Topics.compressed, row.value, row.schema_fp).event;
    const key = eventDedupKey(event);
    if (key !== row.dedup_key) update.run(key, row.topic, row.offset);
  }
}

/** Bytes the -wal file is cut back to after a checkpoint. */
const walSizeLimit = 16 * 1024 * 1024;
/** A file made before auto_vacuum is converted (VACUUM, once) when at least this many pages are free. */
const vacuumMinPages = 1_024;

/** How much of a topic the log keeps: records past either bound are deleted, oldest first. */
export interface RetentionPolicy {
  /** Bytes of record values. */
  readonly maxBytes: number;
  readonly maxAgeMs: number;
}

/** The batch policy's fields (retries, back-off) override its defaults; the back-off also paces commit retries. */
export interface SqliteEventLogOptions extends Partial<BatchPolicy> {
  readonly logger: Logger;
  readonly clock: Clock;
  /** How often a waiting consumer looks for records appended by another process. */
  readonly pollIntervalMs?: number;
  /** How long a write waits for another process's write lock before it fails (retryable). */
  readonly busyTimeoutMs?: number;
  /** Topics the log does not keep whole (dead letters): a size cap and a retention period. */
  readonly retention?: Partial<Record<TopicName, RetentionPolicy>>;
}

interface RecordRow {
  offset: number;
  key: string;
  value: Buffer;
  schema_fp: string;
  appended_at: number;
  trace_context: string | null;
}

interface EncodedOutput {
  readonly records: readonly { readonly record: OutputRecord; readonly buffer: Buffer }[];
  readonly state: StageOutput['state'];
}

/** A batch as read: its records, and the latest erasure when it was read (fences its commit). */
interface ReadBatch<T extends TopicName> {
  readonly records: LogRecord<T>[];
  readonly erasureSeq: number;
}

/**
 * The embedded EventLog: append-only topics in one SQLite file. A stage's output records, its state
 * changes and its consumer offset are committed in one transaction, so killing the process at any point
 * neither loses nor repeats a stage's work.
 */
export class SqliteEventLog implements EventLog {
  private readonly db: SqliteDatabase;
  private readonly codec: AvroCodec;
  private readonly appended = new EventEmitter();
  private readonly pollIntervalMs: number;
  private readonly policy: BatchPolicy;
  private readonly retention: ReadonlyMap<TopicName, RetentionPolicy>;
  private readonly statements;
  private readonly erasure: SqliteLogErasure;
  private readonly readBatch: <T extends TopicName>(topic: T, offset: number, limit: number) => ReadBatch<T>;

  private constructor(
    db: SqliteDatabase,
    private readonly options: SqliteEventLogOptions,
  ) {
    this.db = db;
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
    this.policy = batchPolicyOf(options);
    this.retention = new Map(
      Object.entries(options.retention ?? {}).flatMap(([topic, policy]) =>
        policy === undefined ? [] : [[topic as TopicName, policy] as const],
      ),
    );
    this.appended.setMaxListeners(0);
    this.statements = {
      end: db.prepare<[string], { next_offset: number }>(
        'SELECT next_offset FROM topic_ends WHERE topic = ?',
      ),
      setEnd: db.prepare<[string, number]>(
        'INSERT INTO topic_ends (topic, next_offset) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET next_offset = excluded.next_offset',
      ),
      dedupHit: db.prepare<[string, string], { one: number }>(
        'SELECT 1 AS one FROM records WHERE topic = ? AND dedup_key = ?',
      ),
      insert: db.prepare<
        [
          string,
          number,
          string,
          Buffer,
          string,
          string | null,
          number,
          string | null,
          string | null,
          string | null,
        ]
      >(
        `INSERT INTO records (topic, offset, key, value, schema_fp, dedup_key, appended_at, tenant_id, user_id, trace_context)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      owner: db.prepare<[string, number], RecordOwner>(
        'SELECT tenant_id AS tenantId, user_id AS userId FROM records WHERE topic = ? AND offset = ?',
      ),
      firstFrom: db.prepare<[string, number], { offset: number }>(
        'SELECT offset FROM records WHERE topic = ? AND offset >= ? ORDER BY offset LIMIT 1',
      ),
      read: db.prepare<[string, number, number], RecordRow>(
        'SELECT offset, key, value, schema_fp, appended_at, trace_context FROM records WHERE topic = ? AND offset >= ? ORDER BY offset LIMIT ?',
      ),
      committed: db.prepare<[string, string], { offset: number }>(
        'SELECT offset FROM consumer_offsets WHERE grp = ? AND topic = ?',
      ),
      commit: db.prepare<[string, string, number]>(
        'INSERT INTO consumer_offsets (grp, topic, offset) VALUES (?, ?, ?) ON CONFLICT (grp, topic) DO UPDATE SET offset = excluded.offset',
      ),
      stateGet: db.prepare<[string, string], { value: string }>(
        'SELECT value FROM stage_state WHERE grp = ? AND key = ?',
      ),
      stateKeys: db.prepare<[string, string, string], { key: string }>(
        'SELECT key FROM stage_state WHERE grp = ? AND key >= ? AND key < ? ORDER BY key',
      ),
      statePut: db.prepare<[string, string, string]>(
        'INSERT INTO stage_state (grp, key, value) VALUES (?, ?, ?) ON CONFLICT (grp, key) DO UPDATE SET value = excluded.value',
      ),
      stateDelete: db.prepare<[string, string]>('DELETE FROM stage_state WHERE grp = ? AND key = ?'),
      schema: db.prepare<[string], { schema: string }>(
        'SELECT schema FROM writer_schemas WHERE fingerprint = ?',
      ),
      usage: db.prepare<[string], TopicUsage>(
        'SELECT records, bytes, pruned FROM topic_usage WHERE topic = ?',
      ),
      addUsage: db.prepare<[string, number, number, number]>(
        `INSERT INTO topic_usage (topic, records, bytes, pruned) VALUES (?, ?, ?, ?)
         ON CONFLICT (topic) DO UPDATE SET records = records + excluded.records,
           bytes = bytes + excluded.bytes, pruned = pruned + excluded.pruned`,
      ),
      oldest: db.prepare<[string, number], { offset: number; size: number; appended_at: number }>(
        'SELECT offset, length(value) AS size, appended_at FROM records WHERE topic = ? ORDER BY offset LIMIT ?',
      ),
      deleteRecord: db.prepare<[string, number]>('DELETE FROM records WHERE topic = ? AND offset = ?'),
      consumedRange: db.prepare<[string, number, number], { records: number; bytes: number; last: number }>(
        `SELECT COUNT(*) AS records, COALESCE(SUM(length(value)), 0) AS bytes, MAX(offset) AS last
         FROM (SELECT offset, value FROM records WHERE topic = ? AND offset < ? ORDER BY offset LIMIT ?)`,
      ),
      deleteRange: db.prepare<[string, number]>('DELETE FROM records WHERE topic = ? AND offset <= ?'),
    };
    this.codec = new AvroCodec((fingerprint) => this.statements.schema.get(fingerprint)?.schema);
    this.erasure = new SqliteLogErasure(db);
    // One read transaction: the records and the erasure sequence come from the same snapshot.
    const readBatch = db.transaction((topic: TopicName, offset: number, limit: number) => ({
      records: this.readSync(topic, offset, limit),
      erasureSeq: this.erasure.currentSeq(),
    }));
    this.readBatch = <T extends TopicName>(topic: T, offset: number, limit: number): ReadBatch<T> =>
      readBatch(topic, offset, limit) as ReadBatch<T>;
    const register = db.prepare<[string, string]>(
      'INSERT OR IGNORE INTO writer_schemas (fingerprint, schema) VALUES (?, ?)',
    );
    writeTransaction(db, 'recording the writer schemas', () => {
      for (const { fingerprint, schema } of this.codec.writerSchemas()) register.run(fingerprint, schema);
      for (const topic of this.retention.keys()) this.applyRetention(topic, options.clock.now());
    });
  }

  static open(file: string, options: SqliteEventLogOptions): SqliteEventLog {
    const db = openDatabase(
      file,
      options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs },
    );
    try {
      // Erasure must not leave deleted records readable in free pages of the file.
      db.pragma('secure_delete = ON');
      // Pages freed by pruning consumed records go back to the file system (pruneConsumed): a new file is
      // made incremental; an existing one is converted by one VACUUM when pruning first frees much of it.
      const tables = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM sqlite_schema').get();
      if (tables?.n === 0 && Number(db.pragma('auto_vacuum', { simple: true })) === 0) {
        // Under WAL the setting takes effect by a VACUUM only (instant on an empty file).
        db.pragma('auto_vacuum = INCREMENTAL');
        db.exec('VACUUM');
      }
      // The -wal file is cut back to this after a checkpoint instead of keeping its largest size.
      db.pragma(`journal_size_limit = ${walSizeLimit}`);
      migrate(db, migrations);
      return new SqliteEventLog(db, options);
    } catch (error) {
      db.close();
      throw storageError(error, `opening ${file}`);
    }
  }

  /** The underlying database, for the owner lock of the embedded runtime. */
  get database(): SqliteDatabase {
    return this.db;
  }

  // async: a record that fails its schema rejects the promise instead of throwing at the call.
  async append<T extends TopicName>(topic: T, records: readonly AppendRecord<T>[]): Promise<AppendResult> {
    // Encode first: a record that does not match its schema fails the call before anything is written.
    const encoded = records.map((record) => ({ record, buffer: this.codec.encode(topic, record.value) }));
    const result = writeTransaction(this.db, `appending to ${topic}`, () => {
      const duplicateIndexes = this.insert(topic, encoded, this.options.clock.now());
      return {
        appended: encoded.length - duplicateIndexes.length,
        duplicates: duplicateIndexes.length,
        duplicateIndexes,
      };
    });
    if (result.appended > 0) this.appended.emit(topic);
    return result;
  }

  async read<T extends TopicName>(topic: T, fromOffset: number, limit: number): Promise<LogRecord<T>[]> {
    return this.readSync(topic, fromOffset, limit);
  }

  endOffset(topic: TopicName): Promise<number> {
    return Promise.resolve(this.statements.end.get(topic)?.next_offset ?? 0);
  }

  committedOffset(group: string, topic: TopicName): Promise<number> {
    return Promise.resolve(this.statements.committed.get(group, topic)?.offset ?? 0);
  }

  usage(topic: TopicName): Promise<TopicUsage> {
    return Promise.resolve(this.usageNow(topic));
  }

  /** Deletes what is past the retention of every topic that has one (also done on each append to it). */
  enforceRetention(): void {
    if (this.retention.size === 0) return;
    writeTransaction(this.db, 'applying retention', () => {
      for (const topic of this.retention.keys()) this.applyRetention(topic, this.options.clock.now());
    });
  }

  /**
   * Deletes the records of intermediate topics that every consumer group reading them has committed
   * past (a group with no committed offset holds its whole topic), then lets the file shrink. The raw
   * topic is never pruned (replays derive everything again from it), nor are dead letters (they have
   * their own retention). Offsets stay: topic ends and committed offsets do not move, so appends keep
   * counting up and a consumer reads on from where it was. Runs in short write transactions of at most
   * `batchRecords` records, yielding between them, so the stages writing meanwhile wait little.
   */
  async pruneConsumed(
    consumers: readonly { readonly group: string; readonly topic: TopicName }[],
    options: { readonly batchRecords?: number; readonly signal?: AbortSignal } = {},
  ): Promise<{ deleted: number; bytes: number }> {
    const batchRecords = options.batchRecords ?? 2_000;
    const groups = new Map<TopicName, string[]>();
    for (const { group, topic } of consumers) {
      if (topic === Topics.raw || topic === Topics.deadLetters || this.retention.has(topic)) continue;
      groups.set(topic, [...(groups.get(topic) ?? []), group]);
    }
    let deleted = 0;
    let bytes = 0;
    for (const [topic, readers] of groups) {
      for (;;) {
        if (options.signal?.aborted === true) break;
        const done = writeTransaction(this.db, `pruning consumed records of ${topic}`, () => {
          // Re-read in the transaction: a consumer's offset only grows, but a new reader may start at 0.
          const below = Math.min(
            ...readers.map((group) => this.statements.committed.get(group, topic)?.offset ?? 0),
          );
          const range = this.statements.consumedRange.get(topic, below, batchRecords);
          if (range === undefined || range.records === 0) return null;
          this.statements.deleteRange.run(topic, range.last);
          this.statements.addUsage.run(topic, -range.records, -range.bytes, range.records);
          return range;
        });
        if (done === null) break;
        deleted += done.records;
        bytes += done.bytes;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    if (deleted > 0) this.shrink();
    return { deleted, bytes };
  }

  stateOf(group: string): StateReader {
    return {
      get: (key) => Promise.resolve(this.statements.stateGet.get(group, key)?.value),
      keys: (prefix) =>
        // U+10FFFF sorts after every character in SQLite's (UTF-8 byte) order; U+FFFF would miss astral ones.
        Promise.resolve(
          this.statements.stateKeys.all(group, prefix, `${prefix}\u{10FFFF}`).map((row) => row.key),
        ),
    };
  }

  async eraseUser(tenantId: string, userId: string, erasedAt: number): Promise<LogErasure> {
    const erased = writeTransaction(this.db, `erasing user ${userId} of ${tenantId}`, () =>
      this.erasure.eraseUser(tenantId, userId, erasedAt),
    );
    checkpointAfterErasure(this.db);
    return erased;
  }

  async completeErasure(
    tenantId: string,
    userId: string,
    receipt: string,
    completedAt: number,
  ): Promise<void> {
    writeTransaction(this.db, 'recording an erasure receipt', () => {
      this.erasure.complete(tenantId, userId, receipt, completedAt);
    });
    return Promise.resolve();
  }

  /**
   * Deletes what a pipeline derived here (a dropped version): every record of these topics and the
   * offsets and state of these consumer groups. Topic ends stay, so offsets never go back.
   */
  dropDerived(topics: readonly TopicName[], groups: readonly string[]): void {
    writeTransaction(this.db, 'deleting a dropped version', () => {
      for (const topic of topics) {
        const { records, bytes } = this.usageNow(topic);
        this.db.prepare('DELETE FROM records WHERE topic = ?').run(topic);
        this.statements.addUsage.run(topic, -records, -bytes, records);
      }
      for (const group of groups) {
        this.db.prepare('DELETE FROM consumer_offsets WHERE grp = ?').run(group);
        this.db.prepare('DELETE FROM stage_state WHERE grp = ?').run(group);
      }
    });
    checkpointAfterErasure(this.db);
  }

  /** The tenants that have records in the raw topic. */
  tenants(): string[] {
    return this.db
      .prepare<[string], { tenant: string }>(
        'SELECT DISTINCT tenant_id AS tenant FROM records WHERE topic = ? AND tenant_id IS NOT NULL ORDER BY 1',
      )
      .all(Topics.raw)
      .map((row) => row.tenant);
  }

  erasures(tenantId?: string): Promise<ErasureTombstone[]> {
    return Promise.resolve(this.erasure.tombstones(tenantId));
  }

  async consume<T extends TopicName>(options: ConsumeOptions<T>, handler: BatchHandler<T>): Promise<void> {
    const { group, topic, signal } = options;
    const batchSize = options.batchSize ?? 256;
    const state = this.stateOf(group);
    const { policy } = this;
    const encode = encodeOnce((record) => this.codec.encode(record.topic, record.value));
    let commitFailures = 0;
    while (!signal.aborted) {
      const offset = this.statements.committed.get(group, topic)?.offset ?? 0;
      const { records, erasureSeq } = this.readBatch(topic, offset, batchSize);
      const last = records.at(-1);
      if (last === undefined) {
        // Records below the end that are gone (erased) are passed over; else wait for new ones.
        if (!this.skipGap(group, topic, offset)) await this.waitForAppend(topic, offset, signal);
        continue;
      }
      const output = await runBatch(records, handler, state, {
        group,
        signal,
        logger: this.options.logger,
        clock: this.options.clock,
        policy,
        check: (out) => {
          for (const record of out.records) encode(record);
        },
        retryable: (error) => isRetryable(error) || isTransientSqliteError(error),
      });
      if (output === null) return;
      try {
        // Offsets are not dense (erased and pruned records leave gaps): the next one is past the last read.
        this.commit(
          group,
          topic,
          offset,
          last.offset + 1,
          {
            records: output.records.map((record) => ({ record, buffer: encode(record) })),
            state: output.state,
          },
          erasureSeq,
        );
        commitFailures = 0;
      } catch (error) {
        // Contention on the file (another process writing) is retried: the batch is run again from its
        // committed offset. Anything else (the offset moved under us: another owner) ends the consumer.
        if (signal.aborted || !isRetryable(error)) throw error;
        commitFailures++;
        if (commitFailures >= policy.maxAttempts) {
          throw new RetriesExhaustedError(
            `stage ${group}: committing ${topic}@${offset}`,
            commitFailures,
            error,
          );
        }
        const delay = backoffMs(commitFailures, policy.retryBaseMs, policy.retryMaxMs, policy.jitter);
        this.options.logger.warn('commit failed, retrying', {
          group,
          topic,
          offset,
          attempt: commitFailures,
          delayMs: delay,
          ...errorFields(error),
        });
        await sleep(delay, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  close(): Promise<void> {
    this.appended.removeAllListeners();
    this.db.close();
    return Promise.resolve();
  }

  /**
   * Gives the pages pruning freed back to the file system: an incremental vacuum (a file made before
   * auto_vacuum was set is converted by one VACUUM, once most of it is free), then a checkpoint that does not wait
   * (the file shrinks under WAL when it is checkpointed). Best effort: another process holding the lock only delays it.
   */
  private shrink(): void {
    try {
      const free = Number(this.db.pragma('freelist_count', { simple: true }));
      if (free === 0) return;
      if (Number(this.db.pragma('auto_vacuum', { simple: true })) === 0) {
        const pages = Number(this.db.pragma('page_count', { simple: true }));
        if (free < vacuumMinPages || free * 2 < pages) return;
        this.db.pragma('auto_vacuum = INCREMENTAL');
        this.db.exec('VACUUM');
      } else {
        this.db.pragma('incremental_vacuum');
      }
      checkpointAfterErasure(this.db);
    } catch (error) {
      if (!isTransientSqliteError(error)) throw error;
    }
  }

  private readSync<T extends TopicName>(topic: T, fromOffset: number, limit: number): LogRecord<T>[] {
    return this.statements.read.all(topic, fromOffset, limit).map((row) => ({
      topic,
      offset: row.offset,
      key: row.key,
      value: this.codec.decode(topic, row.value, row.schema_fp),
      appendedAt: row.appended_at,
      ...(row.trace_context === null ? {} : { traceContext: row.trace_context }),
    }));
  }

  /**
   * Moves a group that has read everything there is past the end of its topic when records between its
   * offset and the end are gone (erased): else it would wait for them forever and count them as pending.
   * Checked in a write transaction, so a record appended meanwhile is never passed over. Returns whether
   * the offset moved.
   */
  private skipGap(group: string, topic: TopicName, offset: number): boolean {
    if ((this.statements.end.get(topic)?.next_offset ?? 0) <= offset) return false;
    try {
      return writeTransaction(this.db, `passing over erased records of ${topic}`, () => {
        if ((this.statements.committed.get(group, topic)?.offset ?? 0) !== offset) return false;
        const next =
          this.statements.firstFrom.get(topic, offset)?.offset ??
          this.statements.end.get(topic)?.next_offset ??
          0;
        if (next <= offset) return false;
        this.statements.commit.run(group, topic, next);
        return true;
      });
    } catch (error) {
      if (!isRetryable(error)) throw error;
      return false;
    }
  }

  /**
   * Inserts records into a topic (inside a write transaction), skipping those whose dedup key is there;
   * keeps the topic's end and usage, and applies its retention. Returns the positions it skipped. Each
   * record is stored with its owner (tenant and user), by which erasure finds it.
   */
  private insert(
    topic: TopicName,
    encoded: readonly { readonly record: AppendRecord; readonly buffer: Buffer }[],
    now: number,
  ): number[] {
    let next = this.statements.end.get(topic)?.next_offset ?? 0;
    const fingerprint = this.codec.fingerprintOf(topic);
    const skipped: number[] = [];
    let written = 0;
    let bytes = 0;
    for (const [index, { record, buffer }] of encoded.entries()) {
      const dedupKey = record.dedupKey ?? null;
      if (
        (dedupKey !== null && this.statements.dedupHit.get(topic, dedupKey) !== undefined) ||
        this.isStaleControlEvent(topic, record)
      ) {
        skipped.push(index);
        continue;
      }
      const owner = this.ownerOf(topic, record);
      this.statements.insert.run(
        topic,
        next,
        record.key,
        buffer,
        fingerprint,
        dedupKey,
        now,
        owner.tenantId,
        owner.userId,
        record.traceContext ?? null,
      );
      next++;
      written++;
      bytes += buffer.length;
    }
    if (written > 0) {
      this.statements.setEnd.run(topic, next);
      this.statements.addUsage.run(topic, written, bytes, 0);
      this.applyRetention(topic, now);
    }
    return skipped;
  }

  /**
   * A session end or flush of an erased user's conversation made before the erasure (the idle-flush job
   * read the buffer, then the erasure removed it): there is nothing left for it to close, so it is taken as
   * done. Turns are always appended: the user may start over.
   */
  private isStaleControlEvent(topic: TopicName, record: AppendRecord): boolean {
    if (topic !== Topics.raw) return false;
    const event = record.value as ConversationEvent;
    if (event.kind === 'turn') return false;
    const erasedAt = this.erasure.erasedAt(event.tenantId, event.userId);
    return erasedAt !== null && event.receivedAt <= erasedAt;
  }

  private ownerOf(topic: TopicName, record: AppendRecord): RecordOwner {
    return recordOwner(topic, record.value, (source, offset) => this.statements.owner.get(source, offset));
  }

  private usageNow(topic: TopicName): TopicUsage {
    return this.statements.usage.get(topic) ?? { records: 0, bytes: 0, pruned: 0 };
  }

  /** Deletes a topic's oldest records while it is over its size cap or they are past its age (in a transaction). */
  private applyRetention(topic: TopicName, now: number): void {
    const policy = this.retention.get(topic);
    if (policy === undefined) return;
    const cutoff = now - policy.maxAgeMs;
    let { bytes } = this.usageNow(topic);
    for (;;) {
      const oldest = this.statements.oldest.all(topic, 256);
      let deleted = 0;
      let freed = 0;
      for (const row of oldest) {
        if (bytes - freed <= policy.maxBytes && row.appended_at >= cutoff) break;
        this.statements.deleteRecord.run(topic, row.offset);
        deleted++;
        freed += row.size;
      }
      if (deleted > 0) this.statements.addUsage.run(topic, -deleted, -freed, deleted);
      bytes -= freed;
      if (deleted < oldest.length || oldest.length === 0) return;
    }
  }

  /**
   * Output, state and offset in one transaction; refuses if another consumer of the group moved the offset.
   * Users erased since the batch was read (`erasureSeq`) are fenced: their output records and state writes
   * are dropped, so a batch in flight during an erasure cannot write back what it read of them.
   */
  private commit(
    group: string,
    topic: TopicName,
    expected: number,
    next: number,
    output: EncodedOutput,
    erasureSeq: number,
  ): void {
    const touched = writeTransaction(this.db, `committing ${group} on ${topic}`, () => {
      const current = this.statements.committed.get(group, topic)?.offset ?? 0;
      if (current !== expected) {
        throw new LightmemError(
          'conflict',
          `consumer group ${group} on ${topic} was advanced by another process`,
        );
      }
      const fence = this.erasure.fence(erasureSeq);
      const byTopic = this.groupByTopic(output.records, fence);
      const state = unfencedState(output.state, fence);
      if (fence !== null && (state.length < output.state.length || byTopic.dropped > 0)) {
        this.options.logger.info('dropped the output of a batch for users erased while it ran', {
          group,
          topic,
          records: byTopic.dropped,
          stateWrites: output.state.length - state.length,
        });
      }
      const now = this.options.clock.now();
      const written: TopicName[] = [];
      for (const [outTopic, records] of byTopic.records) {
        if (this.insert(outTopic, records, now).length < records.length) written.push(outTopic);
      }
      for (const write of state) {
        if (write.value === null) this.statements.stateDelete.run(group, write.key);
        else this.statements.statePut.run(group, write.key, write.value);
      }
      this.statements.commit.run(group, topic, next);
      return written;
    });
    for (const outTopic of touched) this.appended.emit(outTopic);
  }

  /** Output records by topic, without those of fenced users (counted). */
  private groupByTopic(
    records: EncodedOutput['records'],
    fence: ErasureFence | null,
  ): { records: Map<TopicName, { record: AppendRecord; buffer: Buffer }[]>; dropped: number } {
    const byTopic = new Map<TopicName, { record: AppendRecord; buffer: Buffer }[]>();
    let dropped = 0;
    for (const item of records) {
      if (fence?.ownsRecord(this.ownerOf(item.record.topic, item.record)) === true) {
        dropped++;
        continue;
      }
      const list = byTopic.get(item.record.topic) ?? [];
      list.push(item);
      byTopic.set(item.record.topic, list);
    }
    return { records: byTopic, dropped };
  }

  private async waitForAppend(topic: TopicName, offset: number, signal: AbortSignal): Promise<void> {
    if ((this.statements.end.get(topic)?.next_offset ?? 0) > offset) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.appended.off(topic, done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      // In-process appends wake us at once; appends by another process are seen at the next poll.
      const timer = setTimeout(done, this.pollIntervalMs);
      this.appended.on(topic, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
