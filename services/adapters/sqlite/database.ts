import Database from 'better-sqlite3';
import * as sqliteVec from 'sqlite-vec';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { LightmemError, StorageBusyError, UnavailableError } from '../../core/errors.js';

export type SqliteDatabase = Database.Database;

export interface OpenOptions {
  /** Load the sqlite-vec extension (vec0 tables). */
  readonly vectors?: boolean;
  readonly readonly?: boolean;
  /** How long a write waits for another connection's write lock (default `busyTimeoutMs`). */
  readonly busyTimeoutMs?: number;
  /**
   * Bytes of the file read through a memory map instead of read() calls into the page cache (0: off, the
   * default). Saves a copy per page read: 20–36% of a search over a large store.
   */
  readonly mmapBytes?: number;
}

/**
 * How long a write waits for another process's write lock before failing with a retryable
 * StorageBusyError. better-sqlite3 waits synchronously, so this also bounds how long a thread can stall.
 */
export const busyTimeoutMs = 5_000;

/**
 * Opens a SQLite database for durable, multi-process use: WAL journal (readers never block the writer),
 * synchronous=NORMAL (durable at each checkpoint under WAL; a power cut may lose the last transactions but
 * never corrupts, and a killed *process* loses nothing committed), and a busy timeout so a second process
 * (`lightmem ingest` beside `lightmem serve`) waits instead of failing. Every write goes through
 * `writeTransaction`.
 */
export function openDatabase(file: string, options: OpenOptions = {}): SqliteDatabase {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  let db: SqliteDatabase;
  try {
    db = new Database(file, { readonly: options.readonly ?? false });
  } catch (error) {
    throw new UnavailableError(`cannot open database ${file}`, error);
  }
  db.pragma(`busy_timeout = ${Math.max(0, Math.round(options.busyTimeoutMs ?? busyTimeoutMs))}`);
  if (!(options.readonly ?? false)) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
  }
  db.pragma('foreign_keys = ON');
  if (options.mmapBytes !== undefined && options.mmapBytes > 0) {
    db.pragma(`mmap_size = ${Math.round(options.mmapBytes)}`);
  }
  if (options.vectors ?? false) sqliteVec.load(db);
  return db;
}

/**
 * Runs `work` in an IMMEDIATE transaction: the write lock is taken before the first read, waiting up to
 * the busy timeout for another process to release it. A deferred transaction that reads and then writes
 * fails at once with SQLITE_BUSY_SNAPSHOT when another process committed in between (no busy timeout
 * applies); this one cannot. Contention past the timeout becomes a retryable StorageBusyError that keeps
 * the SQLite error as its cause.
 */
export function writeTransaction<R>(db: SqliteDatabase, what: string, work: () => R): R {
  try {
    return db.transaction(work).immediate();
  } catch (error) {
    throw storageError(error, what);
  }
}

/** A SQLite failure as a typed error: contention is retryable; typed errors pass through. */
export function storageError(error: unknown, what: string): unknown {
  if (error instanceof LightmemError) return error;
  if (isTransientSqliteError(error)) {
    return new StorageBusyError(`${what}: the database is locked by another process; try again`, error);
  }
  return error;
}

/** A schema migration: SQL, or code for changes SQL cannot make (it runs inside the same transaction). */
export type Migration = string | ((db: SqliteDatabase) => void);

/**
 * Applies numbered migrations once, in order, recording the schema version in user_version. Each runs in
 * a write transaction that re-reads the version, so processes opening one file at once migrate it once.
 */
export function migrate(db: SqliteDatabase, migrations: readonly Migration[]): void {
  const version = (): number => Number(db.pragma('user_version', { simple: true }));
  const check = (current: number): void => {
    if (current > migrations.length) {
      throw new LightmemError(
        'storage_corrupt',
        `database schema version ${current} is newer than this lightmem (${migrations.length}); upgrade lightmem`,
      );
    }
  };
  check(version());
  while (version() < migrations.length) {
    writeTransaction(db, 'migrating the database', () => {
      const current = version();
      check(current);
      const step = migrations[current];
      if (step === undefined) return;
      if (typeof step === 'string') db.exec(step);
      else step(db);
      db.pragma(`user_version = ${current + 1}`);
    });
  }
}

/** SQLITE_BUSY and friends are transient: another process holds the lock. */
export function isTransientSqliteError(error: unknown): boolean {
  return (
    error instanceof Error &&
    'code' in error &&
    typeof error.code === 'string' &&
    (error.code.startsWith('SQLITE_BUSY') || error.code.startsWith('SQLITE_LOCKED'))
  );
}

/**
 * After an erasure: copies the write-ahead log into the database file and empties it, so the old images
 * of the pages that held the erased rows do not stay readable in the `-wal` file (with `secure_delete` the
 * pages themselves are zeroed). Best effort and never waits: while another connection reads, the log cannot
 * be emptied now, and SQLite's later checkpoints overwrite it in time.
 */
export function checkpointAfterErasure(db: SqliteDatabase): void {
  const timeout = Number(db.pragma('busy_timeout', { simple: true }));
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    // Busy, or not in WAL mode (an in-memory database): nothing to do now.
  } finally {
    db.pragma(`busy_timeout = ${timeout}`);
  }
}
