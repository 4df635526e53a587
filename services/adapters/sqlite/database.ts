import Database from 'better-sqlite3';
import * as sqliteVec from 'sqlite-vec';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { LightmemError, UnavailableError } from '../../core/errors.js';

export type SqliteDatabase = Database.Database;

export interface OpenOptions {
  /** Load the sqlite-vec extension (vec0 tables). */
  readonly vectors?: boolean;
  readonly readonly?: boolean;
}

/**
 * Opens a SQLite database for durable, multi-process use: WAL journal (readers never block the writer),
 * synchronous=NORMAL (durable at each checkpoint under WAL; a power cut may lose the last transactions but
 * never corrupts, and a killed *process* loses nothing committed), and a busy timeout so a second process
 * (`lightmem ingest` beside `lightmem serve`) waits instead of failing.
 */
export function openDatabase(file: string, options: OpenOptions = {}): SqliteDatabase {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  let db: SqliteDatabase;
  try {
    db = new Database(file, { readonly: options.readonly ?? false });
  } catch (error) {
    throw new UnavailableError(`cannot open database ${file}`, error);
  }
  db.pragma('busy_timeout = 10000');
  if (!(options.readonly ?? false)) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
  }
  db.pragma('foreign_keys = ON');
  if (options.vectors ?? false) sqliteVec.load(db);
  return db;
}

/** Applies numbered migrations once, in order, recording the schema version in user_version. */
export function migrate(db: SqliteDatabase, migrations: readonly string[]): void {
  const current = Number(db.pragma('user_version', { simple: true }));
  if (current > migrations.length) {
    throw new LightmemError(
      'storage_corrupt',
      `database schema version ${current} is newer than this lightmem (${migrations.length}); upgrade lightmem`,
    );
  }
  for (let version = current; version < migrations.length; version++) {
    const sql = migrations[version];
    if (sql === undefined) break;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version + 1}`);
    })();
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
