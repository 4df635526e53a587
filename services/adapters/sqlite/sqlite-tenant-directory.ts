import { z } from 'zod';
import { apiKeyScopes, generateApiKey, hashSecret, parseApiKey, secretMatches } from '../../core/api-keys.js';
import { LightmemError } from '../../core/errors.js';
import { systemClock, type Clock } from '../../core/ports/clock.js';
import {
  checkKeyId,
  checkNewApiKey,
  checkTenantId,
  type ApiKeyRecord,
  type IssuedApiKey,
  type NewApiKey,
  type Principal,
  type TenantDirectory,
  type TenantRecord,
} from '../../core/ports/tenant-directory.js';
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
  CREATE TABLE tenants (
    tenant_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
    -- SHA-256 (hex) of the secret; the secret itself is never stored.
    secret_hash TEXT NOT NULL,
    -- JSON array of scopes.
    scopes TEXT NOT NULL,
    name TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  ) STRICT;
  CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at, key_id);
  `,
];

export interface SqliteTenantDirectoryOptions {
  /** Creation and revocation times (default: the system clock). */
  readonly clock?: Clock;
  readonly busyTimeoutMs?: number;
}

interface TenantRow {
  tenant_id: string;
  created_at: number;
}

interface KeyRow {
  key_id: string;
  tenant_id: string;
  secret_hash: string;
  scopes: string;
  name: string | null;
  created_at: number;
  revoked_at: number | null;
}

const StoredScopes = z.array(z.enum(apiKeyScopes));
/** Key ids are 64 random bits: a collision is all but impossible, and is retried with a new key. */
const maxKeyAttempts = 3;

/**
 * The embedded tenant directory: one SQLite file (`tenants.db` in the data dir) shared by the processes of
 * the data dir. Nothing is cached: every `authenticate` reads the file, so a key revoked by
 * `lightmem key revoke` in another process is refused by the next request.
 */
export class SqliteTenantDirectory implements TenantDirectory {
  private readonly statements;

  private constructor(
    private readonly db: SqliteDatabase,
    private readonly clock: Clock,
  ) {
    this.statements = {
      tenant: db.prepare<[string], TenantRow>(
        'SELECT tenant_id, created_at FROM tenants WHERE tenant_id = ?',
      ),
      tenants: db.prepare<[], TenantRow>('SELECT tenant_id, created_at FROM tenants ORDER BY tenant_id'),
      insertTenant: db.prepare<[string, number]>('INSERT INTO tenants (tenant_id, created_at) VALUES (?, ?)'),
      key: db.prepare<[string], KeyRow>('SELECT * FROM api_keys WHERE key_id = ?'),
      keys: db.prepare<[], KeyRow>('SELECT * FROM api_keys ORDER BY created_at, key_id'),
      keysOf: db.prepare<[string], KeyRow>(
        'SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, key_id',
      ),
      insertKey: db.prepare(
        `INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes, name, created_at, revoked_at)
         VALUES (@keyId, @tenantId, @secretHash, @scopes, @name, @createdAt, NULL)`,
      ),
      revoke: db.prepare<[number, string]>(
        'UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL',
      ),
    };
  }

  /** Opens (creating and migrating) the directory in `file`, or `:memory:` for a private one. */
  static open(file: string, options: SqliteTenantDirectoryOptions = {}): SqliteTenantDirectory {
    const db = openDatabase(
      file,
      options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs },
    );
    try {
      migrate(db, migrations);
    } catch (error) {
      db.close();
      throw storageError(error, `opening the tenant directory ${file}`);
    }
    return new SqliteTenantDirectory(db, options.clock ?? systemClock);
  }

  async createTenant(tenantId: string): Promise<TenantRecord> {
    const id = checkTenantId(tenantId);
    return writeTransaction(this.db, 'creating a tenant', () => {
      if (this.statements.tenant.get(id) !== undefined) {
        throw new LightmemError('conflict', `tenant ${id} exists`, { field: 'tenantId' });
      }
      const record = { tenantId: id, createdAt: this.clock.now() };
      this.statements.insertTenant.run(record.tenantId, record.createdAt);
      return record;
    });
  }

  async tenant(tenantId: string): Promise<TenantRecord | undefined> {
    const id = checkTenantId(tenantId);
    const row = this.read('reading a tenant', () => this.statements.tenant.get(id));
    return row === undefined ? undefined : tenantRecord(row);
  }

  async tenants(): Promise<TenantRecord[]> {
    return this.read('listing tenants', () => this.statements.tenants.all()).map(tenantRecord);
  }

  async createKey(input: NewApiKey): Promise<IssuedApiKey> {
    const { tenantId, scopes, name } = checkNewApiKey(input);
    return writeTransaction(this.db, 'creating an API key', () => {
      if (this.statements.tenant.get(tenantId) === undefined) {
        throw new LightmemError('not_found', `tenant ${tenantId} does not exist`, { field: 'tenantId' });
      }
      for (let attempt = 1; ; attempt++) {
        const generated = generateApiKey();
        if (this.statements.key.get(generated.keyId) !== undefined) {
          if (attempt < maxKeyAttempts) continue;
          throw new LightmemError('internal', 'could not draw an unused key id');
        }
        const key: ApiKeyRecord = {
          keyId: generated.keyId,
          tenantId,
          scopes,
          name,
          createdAt: this.clock.now(),
          revokedAt: null,
        };
        this.statements.insertKey.run({
          keyId: key.keyId,
          tenantId,
          secretHash: hashSecret(generated.secret),
          scopes: JSON.stringify(scopes),
          name,
          createdAt: key.createdAt,
        });
        return { apiKey: generated.token, key };
      }
    });
  }

  async keys(tenantId?: string): Promise<ApiKeyRecord[]> {
    const id = tenantId === undefined ? undefined : checkTenantId(tenantId);
    const rows = this.read('listing API keys', () =>
      id === undefined ? this.statements.keys.all() : this.statements.keysOf.all(id),
    );
    return rows.map(keyRecord);
  }

  async revokeKey(keyId: string, tenantId?: string): Promise<ApiKeyRecord> {
    const id = checkKeyId(keyId);
    const owner = tenantId === undefined ? undefined : checkTenantId(tenantId);
    return writeTransaction(this.db, 'revoking an API key', () => {
      const row = this.statements.key.get(id);
      if (row === undefined || (owner !== undefined && row.tenant_id !== owner)) {
        throw new LightmemError('not_found', `no API key ${id}`, { field: 'keyId' });
      }
      if (row.revoked_at !== null) return keyRecord(row);
      const revokedAt = this.clock.now();
      this.statements.revoke.run(revokedAt, id);
      return keyRecord({ ...row, revoked_at: revokedAt });
    });
  }

  async authenticate(apiKey: string): Promise<Principal | null> {
    const parsed = parseApiKey(apiKey);
    if (parsed === null) return null;
    const row = this.read('authenticating an API key', () => this.statements.key.get(parsed.keyId));
    if (row === undefined || row.revoked_at !== null || !secretMatches(parsed.secret, row.secret_hash)) {
      return null;
    }
    const { tenantId, keyId, scopes } = keyRecord(row);
    return { tenantId, keyId, scopes };
  }

  async close(): Promise<void> {
    this.db.close();
  }

  /** A read, its SQLite failure typed (a lock held past the busy timeout is retryable). */
  private read<R>(what: string, work: () => R): R {
    try {
      return work();
    } catch (error) {
      throw storageError(error, what);
    }
  }
}

function tenantRecord(row: TenantRow): TenantRecord {
  return { tenantId: row.tenant_id, createdAt: row.created_at };
}

/** The listed form of a row: everything but the secret's hash. */
function keyRecord(row: KeyRow): ApiKeyRecord {
  let scopes: z.infer<typeof StoredScopes>;
  try {
    scopes = StoredScopes.parse(JSON.parse(row.scopes));
  } catch (error) {
    throw new LightmemError('storage_corrupt', `API key ${row.key_id} has unreadable scopes`, {
      cause: error,
    });
  }
  return {
    keyId: row.key_id,
    tenantId: row.tenant_id,
    scopes,
    name: row.name,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}
