import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  AppendRecord,
  AppendResult,
  BatchHandler,
  ConsumeOptions,
  EventLog,
  LogRecord,
  OutputRecord,
  StageOutput,
  StateReader,
} from '../../core/ports/event-log.js';
import type { Logger } from '../../core/ports/logger.js';
import type { Clock } from '../../core/ports/clock.js';
import type { TopicName } from '../../core/model/topics.js';
import { LightmemError, errorMessage, isRetryable } from '../../core/errors.js';
import { AvroCodec } from './avro-codec.js';
import { deadLetterFor } from '../stage-batch.js';
import { isTransientSqliteError, migrate, openDatabase, type SqliteDatabase } from './database.js';
import { backoffMs } from '../../core/backoff.js';

const migrations = [
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
];

export interface SqliteEventLogOptions {
  readonly logger: Logger;
  readonly clock: Clock;
  /** How often a waiting consumer looks for records appended by another process. */
  readonly pollIntervalMs?: number;
  /** Backoff for retryable failures: first delay and cap. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
}

interface RecordRow {
  offset: number;
  key: string;
  value: Buffer;
  schema_fp: string;
  appended_at: number;
}

interface EncodedOutput {
  readonly records: readonly { readonly record: OutputRecord; readonly buffer: Buffer }[];
  readonly state: StageOutput['state'];
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
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly statements;

  private constructor(
    db: SqliteDatabase,
    private readonly options: SqliteEventLogOptions,
  ) {
    this.db = db;
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
    this.retryBaseMs = options.retryBaseMs ?? 200;
    this.retryMaxMs = options.retryMaxMs ?? 30_000;
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
      insert: db.prepare<[string, number, string, Buffer, string, string | null, number]>(
        'INSERT INTO records (topic, offset, key, value, schema_fp, dedup_key, appended_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      read: db.prepare<[string, number, number], RecordRow>(
        'SELECT offset, key, value, schema_fp, appended_at FROM records WHERE topic = ? AND offset >= ? ORDER BY offset LIMIT ?',
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
    };
    this.codec = new AvroCodec((fingerprint) => this.statements.schema.get(fingerprint)?.schema);
    const register = db.prepare<[string, string]>(
      'INSERT OR IGNORE INTO writer_schemas (fingerprint, schema) VALUES (?, ?)',
    );
    db.transaction(() => {
      for (const { fingerprint, schema } of this.codec.writerSchemas()) register.run(fingerprint, schema);
    })();
  }

  static open(file: string, options: SqliteEventLogOptions): SqliteEventLog {
    const db = openDatabase(file);
    migrate(db, migrations);
    return new SqliteEventLog(db, options);
  }

  /** The underlying database, for the owner lock of the embedded runtime. */
  get database(): SqliteDatabase {
    return this.db;
  }

  // async: a record that fails its schema rejects the promise instead of throwing at the call.
  async append<T extends TopicName>(topic: T, records: readonly AppendRecord<T>[]): Promise<AppendResult> {
    // Encode first: a record that does not match its schema fails the call before anything is written.
    const encoded = records.map((record) => ({ record, buffer: this.codec.encode(topic, record.value) }));
    const result = this.withTransientRetry(() =>
      this.db.transaction(() => {
        let appended = 0;
        let duplicates = 0;
        let next = this.statements.end.get(topic)?.next_offset ?? 0;
        const fingerprint = this.codec.fingerprintOf(topic);
        const now = this.options.clock.now();
        for (const { record, buffer } of encoded) {
          const dedupKey = record.dedupKey ?? null;
          if (dedupKey !== null && this.statements.dedupHit.get(topic, dedupKey) !== undefined) {
            duplicates++;
            continue;
          }
          this.statements.insert.run(topic, next, record.key, buffer, fingerprint, dedupKey, now);
          next++;
          appended++;
        }
        if (appended > 0) this.statements.setEnd.run(topic, next);
        return { appended, duplicates };
      })(),
    );
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

  async consume<T extends TopicName>(options: ConsumeOptions<T>, handler: BatchHandler<T>): Promise<void> {
    const { group, topic, signal } = options;
    const batchSize = options.batchSize ?? 256;
    const state = this.stateOf(group);
    let attempt = 0;
    /** After a non-retryable batch failure: process one record at a time up to this offset. */
    let isolateUntil = -1;
    while (!signal.aborted) {
      const offset = this.statements.committed.get(group, topic)?.offset ?? 0;
      const size = offset < isolateUntil ? 1 : batchSize;
      const records = this.readSync(topic, offset, size);
      if (records.length === 0) {
        await this.waitForAppend(topic, offset, signal);
        continue;
      }
      let output: EncodedOutput;
      try {
        // Output that does not match its schema is this batch failing (dead-lettered), not the consumer.
        output = this.encodeOutput(await handler(records, state));
      } catch (error) {
        if (signal.aborted) return;
        attempt++;
        if (isRetryable(error) || isTransientSqliteError(error)) {
          const delay = backoffMs(attempt, this.retryBaseMs, this.retryMaxMs);
          this.options.logger.warn('stage failed, retrying', {
            group,
            topic,
            offset,
            attempt,
            delayMs: delay,
            error: errorMessage(error),
          });
          await sleep(delay, undefined, { signal }).catch(() => undefined);
          continue;
        }
        if (records.length > 1) {
          // Find the poison record: replay this batch one record at a time.
          isolateUntil = offset + records.length;
          attempt = 0;
          continue;
        }
        const [poison] = records;
        if (poison === undefined) continue;
        this.options.logger.error('record dead-lettered', {
          group,
          topic,
          offset,
          error: errorMessage(error),
        });
        output = this.encodeOutput({
          records: [deadLetterFor(group, poison, error, attempt, this.options.clock.now())],
          state: [],
        });
      }
      this.commit(group, topic, offset, offset + records.length, output);
      attempt = 0;
    }
  }

  close(): Promise<void> {
    this.appended.removeAllListeners();
    this.db.close();
    return Promise.resolve();
  }

  private readSync<T extends TopicName>(topic: T, fromOffset: number, limit: number): LogRecord<T>[] {
    return this.statements.read.all(topic, fromOffset, limit).map((row) => ({
      topic,
      offset: row.offset,
      key: row.key,
      value: this.codec.decode(topic, row.value, row.schema_fp),
      appendedAt: row.appended_at,
    }));
  }

  private encodeOutput(output: StageOutput): EncodedOutput {
    return {
      records: output.records.map((record) => ({
        record,
        buffer: this.codec.encode(record.topic, record.value as never),
      })),
      state: output.state,
    };
  }

  /** Output, state and offset in one transaction; refuses if another consumer of the group moved the offset. */
  private commit(
    group: string,
    topic: TopicName,
    expected: number,
    next: number,
    output: EncodedOutput,
  ): void {
    const encoded = output.records;
    const touched = new Set<TopicName>();
    this.withTransientRetry(() =>
      this.db.transaction(() => {
        const current = this.statements.committed.get(group, topic)?.offset ?? 0;
        if (current !== expected) {
          throw new LightmemError(
            'conflict',
            `consumer group ${group} on ${topic} was advanced by another process`,
          );
        }
        const now = this.options.clock.now();
        const ends = new Map<TopicName, number>();
        for (const { record, buffer } of encoded) {
          const dedupKey = record.dedupKey ?? null;
          if (dedupKey !== null && this.statements.dedupHit.get(record.topic, dedupKey) !== undefined)
            continue;
          const end = ends.get(record.topic) ?? this.statements.end.get(record.topic)?.next_offset ?? 0;
          this.statements.insert.run(
            record.topic,
            end,
            record.key,
            buffer,
            this.codec.fingerprintOf(record.topic),
            dedupKey,
            now,
          );
          ends.set(record.topic, end + 1);
        }
        for (const [outTopic, end] of ends) {
          this.statements.setEnd.run(outTopic, end);
          touched.add(outTopic);
        }
        for (const write of output.state) {
          if (write.value === null) this.statements.stateDelete.run(group, write.key);
          else this.statements.statePut.run(group, write.key, write.value);
        }
        this.statements.commit.run(group, topic, next);
      })(),
    );
    for (const outTopic of touched) this.appended.emit(outTopic);
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

  /** better-sqlite3 is synchronous; SQLITE_BUSY past the busy timeout is retried a few times. */
  private withTransientRetry<R>(work: () => R): R {
    for (let attempt = 1; ; attempt++) {
      try {
        return work();
      } catch (error) {
        if (!isTransientSqliteError(error) || attempt >= 5) throw error;
        this.options.logger.warn('database busy, retrying', { attempt });
      }
    }
  }
}
