import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import {
  derives,
  servesReads,
  versionName,
  type NewVersion,
  type PipelineVersion,
  type PipelineVersions,
  type ReadRoutes,
} from '../../core/ports/pipeline-versions.js';
import {
  migrate,
  openDatabase,
  storageError,
  writeTransaction,
  type Migration,
  type SqliteDatabase,
} from './database.js';

const migrations: Migration[] = [
  `
  CREATE TABLE versions (
    number INTEGER PRIMARY KEY,
    -- JSON array of tenant ids, or NULL for every tenant.
    tenants TEXT,
    config TEXT,
    created_at INTEGER NOT NULL,
    built_at INTEGER,
    dropped_at INTEGER,
    copied INTEGER NOT NULL DEFAULT 0
  ) STRICT;
  -- tenant '' is the route of every tenant (no tenant id is empty).
  CREATE TABLE routes (tenant TEXT PRIMARY KEY, version INTEGER NOT NULL REFERENCES versions (number)) STRICT;
  CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL) STRICT;
  INSERT INTO versions (number, tenants, config, created_at, built_at)
    VALUES (1, NULL, NULL, CAST(strftime('%s', 'now') AS INTEGER) * 1000, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
  INSERT INTO routes (tenant, version) VALUES ('', 1);
  INSERT INTO generation (id, value) VALUES (0, 1);
  `,
  // Replay --since: the instant and the raw log's end when the version was made.
  `
  ALTER TABLE versions ADD COLUMN since INTEGER;
  ALTER TABLE versions ADD COLUMN since_offset INTEGER;
  `,
];

interface VersionRow {
  number: number;
  tenants: string | null;
  config: string | null;
  created_at: number;
  built_at: number | null;
  dropped_at: number | null;
  copied: number;
  since: number | null;
  since_offset: number | null;
}

const TenantList = z.array(z.string());
const everyTenant = '';

/**
 * The embedded registry of pipeline versions and read routes: `<dataDir>/versions.db`, shared by every
 * process of the data dir. Each change bumps one generation counter in the same transaction, so a process
 * that polls it sees a switch as one step.
 */
export class SqlitePipelineVersions implements PipelineVersions {
  private readonly statements;

  private constructor(private readonly db: SqliteDatabase) {
    this.statements = {
      generation: db.prepare<[], { value: number }>('SELECT value FROM generation WHERE id = 0'),
      bump: db.prepare('UPDATE generation SET value = value + 1 WHERE id = 0'),
      list: db.prepare<[], VersionRow>('SELECT * FROM versions ORDER BY number'),
      get: db.prepare<[number], VersionRow>('SELECT * FROM versions WHERE number = ?'),
      next: db.prepare<[], { next: number }>('SELECT COALESCE(MAX(number), 0) + 1 AS next FROM versions'),
      insert: db.prepare<[number, string | null, string, number, number | null, number | null]>(
        'INSERT INTO versions (number, tenants, config, created_at, since, since_offset) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      advance: db.prepare<[number, number, number]>(
        'UPDATE versions SET copied = ? WHERE number = ? AND copied < ?',
      ),
      built: db.prepare<[number, number]>(
        'UPDATE versions SET built_at = ? WHERE number = ? AND built_at IS NULL',
      ),
      dropped: db.prepare<[number, number]>('UPDATE versions SET dropped_at = ? WHERE number = ?'),
      routes: db.prepare<[], { tenant: string; version: number }>('SELECT tenant, version FROM routes'),
      route: db.prepare<[string, number]>(
        'INSERT INTO routes (tenant, version) VALUES (?, ?) ON CONFLICT (tenant) DO UPDATE SET version = excluded.version',
      ),
      clearTenantRoutes: db.prepare(`DELETE FROM routes WHERE tenant <> ''`),
      clearRoute: db.prepare<[string]>('DELETE FROM routes WHERE tenant = ?'),
    };
  }

  static open(file: string, options: { busyTimeoutMs?: number } = {}): SqlitePipelineVersions {
    const db = openDatabase(file, options);
    try {
      migrate(db, migrations);
      return new SqlitePipelineVersions(db);
    } catch (error) {
      db.close();
      throw storageError(error, `opening ${file}`);
    }
  }

  async generation(): Promise<number> {
    return Promise.resolve(this.statements.generation.get()?.value ?? 0);
  }

  async list(): Promise<PipelineVersion[]> {
    return Promise.resolve(this.statements.list.all().map(versionOf));
  }

  async get(name: string): Promise<PipelineVersion | undefined> {
    const number = numberOf(name);
    const row = number === null ? undefined : this.statements.get.get(number);
    return Promise.resolve(row === undefined ? undefined : versionOf(row));
  }

  async create(version: NewVersion): Promise<PipelineVersion> {
    return Promise.resolve(
      writeTransaction(this.db, 'creating a pipeline version', () => {
        const number = this.statements.next.get()?.next ?? 2;
        const tenants =
          version.tenants === null ? null : JSON.stringify([...new Set(version.tenants)].sort());
        const since = version.since ?? null;
        this.statements.insert.run(
          number,
          tenants,
          version.config,
          version.createdAt,
          since?.at ?? null,
          since?.offset ?? null,
        );
        this.statements.bump.run();
        return versionOf(this.row(number));
      }),
    );
  }

  async advance(name: string, copied: number): Promise<void> {
    const number = this.existing(name).number;
    writeTransaction(this.db, `advancing ${name}`, () => this.statements.advance.run(copied, number, copied));
    return Promise.resolve();
  }

  async markBuilt(name: string, at: number): Promise<void> {
    const number = this.existing(name).number;
    writeTransaction(this.db, `marking ${name} built`, () => {
      if (this.statements.built.run(at, number).changes > 0) this.statements.bump.run();
    });
    return Promise.resolve();
  }

  async routes(): Promise<ReadRoutes> {
    return Promise.resolve(this.readRoutes());
  }

  async switchTo(name: string, tenants: readonly string[] | null): Promise<ReadRoutes> {
    return Promise.resolve(
      writeTransaction(this.db, `switching reads to ${name}`, () => {
        const version = versionOf(this.existing(name));
        if (version.droppedAt !== null) {
          throw new LightmemError('conflict', `${name} was dropped: reads cannot be switched to it`);
        }
        if (version.builtAt === null) {
          throw new LightmemError(
            'conflict',
            `${name} has not caught up with the raw log yet: wait for its replay to finish (lightmem replay status)`,
            { retryable: true },
          );
        }
        if (tenants === null) {
          if (version.tenants !== null) {
            throw new LightmemError(
              'conflict',
              `${name} derives only tenants ${version.tenants.join(', ')}: switch those tenants, not every tenant`,
            );
          }
          this.statements.clearTenantRoutes.run();
          this.statements.route.run(everyTenant, version.number);
        } else {
          for (const tenant of tenants) {
            if (!derives(version, tenant)) {
              throw new LightmemError('conflict', `${name} does not derive tenant ${tenant}`, {
                field: 'tenantId',
              });
            }
          }
          const all = this.readRoutes().all;
          for (const tenant of tenants) {
            // A tenant routed where every tenant goes needs no route of its own.
            if (all === name) this.statements.clearRoute.run(tenant);
            else this.statements.route.run(tenant, version.number);
          }
        }
        this.statements.bump.run();
        return this.readRoutes();
      }),
    );
  }

  async drop(name: string, at: number): Promise<PipelineVersion> {
    return Promise.resolve(
      writeTransaction(this.db, `dropping ${name}`, () => {
        const version = versionOf(this.existing(name));
        if (servesReads(this.readRoutes(), name)) {
          throw new LightmemError(
            'conflict',
            `${name} serves reads: switch them to another version before dropping it`,
          );
        }
        if (version.droppedAt === null) {
          this.statements.dropped.run(at, version.number);
          this.statements.bump.run();
        }
        return versionOf(this.row(version.number));
      }),
    );
  }

  async close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }

  private readRoutes(): ReadRoutes {
    let all = versionName(1);
    const tenants: Record<string, string> = {};
    for (const row of this.statements.routes.all()) {
      if (row.tenant === everyTenant) all = versionName(row.version);
      else tenants[row.tenant] = versionName(row.version);
    }
    return { all, tenants };
  }

  private row(number: number): VersionRow {
    const row = this.statements.get.get(number);
    if (row === undefined) throw new LightmemError('internal', `version ${number} vanished`);
    return row;
  }

  private existing(name: string): VersionRow {
    const number = numberOf(name);
    const row = number === null ? undefined : this.statements.get.get(number);
    if (row === undefined) {
      throw new LightmemError('not_found', `no pipeline version ${JSON.stringify(name)}`, {
        field: 'version',
      });
    }
    return row;
  }
}

function numberOf(name: string): number | null {
  const match = /^v([1-9][0-9]{0,8})$/.exec(name);
  return match?.[1] === undefined ? null : Number(match[1]);
}

function versionOf(row: VersionRow): PipelineVersion {
  return {
    name: versionName(row.number),
    number: row.number,
    tenants: row.tenants === null ? null : TenantList.parse(JSON.parse(row.tenants)),
    config: row.config,
    createdAt: row.created_at,
    builtAt: row.built_at,
    droppedAt: row.dropped_at,
    copied: row.copied,
    since: row.since,
    sinceOffset: row.since_offset,
  };
}
