import { Client, type estypes } from '@elastic/elasticsearch';
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
import { errorTypeOf, esFailure, statusOf } from './es-errors.js';
import { getVersioned, type VersionedDoc } from './es-mget.js';
import { elasticsearchClient, type ElasticsearchRegistryOptions } from './es-client.js';

/** The registry's connection and index prefix: the index is `<prefix>tenants-v1`. */
export type ElasticsearchTenantDirectoryOptions = ElasticsearchRegistryOptions;

const keyword = { type: 'keyword' } as const;
const stored = { type: 'keyword', index: false, doc_values: false } as const;
const epochMillis = { type: 'date', format: 'epoch_millis' } as const;

/** Tenants and keys in one small index, told apart by `kind`. */
const mappings = {
  dynamic: 'strict',
  properties: {
    kind: keyword,
    tenant_id: keyword,
    key_id: keyword,
    /** SHA-256 (hex) of the secret: read by id only, never searched. The secret itself is never stored. */
    secret_hash: stored,
    scopes: keyword,
    name: stored,
    created_at: epochMillis,
    revoked_at: epochMillis,
  },
} as const;

const TenantDoc = z.object({ kind: z.literal('tenant'), tenant_id: z.string(), created_at: z.number() });
type TenantDoc = z.infer<typeof TenantDoc>;
/** A key as listed (searches leave the hash out). */
const ListedKeyDoc = z.object({
  kind: z.literal('key'),
  key_id: z.string(),
  tenant_id: z.string(),
  scopes: z.array(z.enum(apiKeyScopes)),
  name: z.string().nullable(),
  created_at: z.number(),
  revoked_at: z.number().nullable(),
});
type ListedKeyDoc = z.infer<typeof ListedKeyDoc>;
const KeyDoc = ListedKeyDoc.extend({ secret_hash: z.string() });
type KeyDoc = z.infer<typeof KeyDoc>;

const SortValues = z.array(z.union([z.string(), z.number()]));
const Hits = z.object({
  hits: z.object({ hits: z.array(z.object({ _id: z.string(), _source: z.unknown(), sort: SortValues })) }),
});

const pageSize = 1_000;
/** Key ids are 64 random bits: a collision is all but impossible, and is retried with a new key. */
const maxKeyAttempts = 3;
/** Concurrent revocations of one key race on its version; the loser re-reads (it finds the key revoked). */
const maxRevokeAttempts = 5;

/**
 * The tenant directory of distributed mode: one index, `<prefix>tenants-v1`, read by every API replica.
 * Documents `tenant:<id>` and `key:<keyId>`; creations use op_type create (an existing id is a conflict,
 * never an overwrite). `authenticate` and `revokeKey` read by id with a real-time GET, which sees every
 * acknowledged write without a refresh, so a revocation is refused by every replica's next call. Writes
 * wait for a refresh (`wait_for`) so that the listings (searches) of every replica show them too.
 */
export class ElasticsearchTenantDirectory implements TenantDirectory {
  private readonly index: string;

  private constructor(
    private readonly client: Client,
    indexPrefix: string,
    private readonly clock: Clock,
  ) {
    this.index = `${indexPrefix}tenants-v1`;
  }

  /** Connects and makes sure the index exists (idempotent; safe when several replicas start at once). */
  static async open(options: ElasticsearchTenantDirectoryOptions): Promise<ElasticsearchTenantDirectory> {
    const client = elasticsearchClient({
      node: options.node,
      security: options.security,
      requestTimeoutMs: options.requestTimeoutMs,
    });
    const directory = new ElasticsearchTenantDirectory(
      client,
      options.indexPrefix,
      options.clock ?? systemClock,
    );
    try {
      await directory.ensureIndex();
    } catch (error) {
      await client.close();
      throw esFailure(error, 'opening the tenant directory');
    }
    return directory;
  }

  async createTenant(tenantId: string): Promise<TenantRecord> {
    const id = checkTenantId(tenantId);
    const doc: TenantDoc = { kind: 'tenant', tenant_id: id, created_at: this.clock.now() };
    try {
      await this.client.create({
        index: this.index,
        id: tenantDocId(id),
        document: doc,
        refresh: 'wait_for',
      });
    } catch (error) {
      if (statusOf(error) === 409) {
        throw new LightmemError('conflict', `tenant ${id} exists`, { field: 'tenantId', cause: error });
      }
      throw esFailure(error, 'creating a tenant');
    }
    return tenantRecord(doc);
  }

  async tenant(tenantId: string): Promise<TenantRecord | undefined> {
    const id = checkTenantId(tenantId);
    const found = await this.get(tenantDocId(id), 'reading a tenant');
    return found === undefined ? undefined : tenantRecord(decode(TenantDoc, found.source, tenantDocId(id)));
  }

  async tenants(): Promise<TenantRecord[]> {
    const docs = await this.list({ term: { kind: 'tenant' } }, [{ tenant_id: 'asc' }], 'listing tenants');
    return docs.map(([source, id]) => tenantRecord(decode(TenantDoc, source, id)));
  }

  async createKey(input: NewApiKey): Promise<IssuedApiKey> {
    const { tenantId, scopes, name } = checkNewApiKey(input);
    // Tenants are never deleted: once seen, the tenant is there when the key is written.
    if ((await this.get(tenantDocId(tenantId), 'reading a tenant')) === undefined) {
      throw new LightmemError('not_found', `tenant ${tenantId} does not exist`, { field: 'tenantId' });
    }
    for (let attempt = 1; ; attempt++) {
      const generated = generateApiKey();
      const doc: KeyDoc = {
        kind: 'key',
        key_id: generated.keyId,
        tenant_id: tenantId,
        secret_hash: hashSecret(generated.secret),
        scopes,
        name,
        created_at: this.clock.now(),
        revoked_at: null,
      };
      try {
        await this.client.create({
          index: this.index,
          id: keyDocId(generated.keyId),
          document: doc,
          refresh: 'wait_for',
        });
        return { apiKey: generated.token, key: keyRecord(doc) };
      } catch (error) {
        if (statusOf(error) === 409 && attempt < maxKeyAttempts) continue;
        throw esFailure(error, 'creating an API key');
      }
    }
  }

  async keys(tenantId?: string): Promise<ApiKeyRecord[]> {
    const filter: estypes.QueryDslQueryContainer[] = [{ term: { kind: 'key' } }];
    if (tenantId !== undefined) filter.push({ term: { tenant_id: checkTenantId(tenantId) } });
    const docs = await this.list(
      { bool: { filter } },
      [{ created_at: 'asc' }, { key_id: 'asc' }],
      'listing API keys',
    );
    return docs.map(([source, id]) => keyRecord(decode(ListedKeyDoc, source, id)));
  }

  async revokeKey(keyId: string, tenantId?: string): Promise<ApiKeyRecord> {
    const id = checkKeyId(keyId);
    const owner = tenantId === undefined ? undefined : checkTenantId(tenantId);
    for (let attempt = 1; ; attempt++) {
      const found = await this.get(keyDocId(id), 'reading an API key');
      if (found === undefined) throw new LightmemError('not_found', `no API key ${id}`, { field: 'keyId' });
      const doc = decode(KeyDoc, found.source, keyDocId(id));
      // Another tenant's key is answered exactly as a missing one.
      if (owner !== undefined && doc.tenant_id !== owner) {
        throw new LightmemError('not_found', `no API key ${id}`, { field: 'keyId' });
      }
      if (doc.revoked_at !== null) return keyRecord(doc);
      const revokedAt = this.clock.now();
      try {
        // Only over the version just read: a concurrent revocation keeps its (first) time.
        await this.client.update({
          index: this.index,
          id: keyDocId(id),
          doc: { revoked_at: revokedAt },
          if_seq_no: found.seqNo,
          if_primary_term: found.primaryTerm,
          refresh: 'wait_for',
        });
        return keyRecord({ ...doc, revoked_at: revokedAt });
      } catch (error) {
        if (statusOf(error) === 409 && attempt < maxRevokeAttempts) continue;
        throw esFailure(error, 'revoking an API key');
      }
    }
  }

  async authenticate(apiKey: string): Promise<Principal | null> {
    const parsed = parseApiKey(apiKey);
    if (parsed === null) return null;
    const found = await this.get(keyDocId(parsed.keyId), 'authenticating an API key');
    if (found === undefined) return null;
    const doc = decode(KeyDoc, found.source, keyDocId(parsed.keyId));
    if (doc.revoked_at !== null || !secretMatches(parsed.secret, doc.secret_hash)) return null;
    return { tenantId: doc.tenant_id, keyId: doc.key_id, scopes: doc.scopes };
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private async ensureIndex(): Promise<void> {
    try {
      await this.client.indices.create({
        index: this.index,
        mappings,
        settings: { number_of_shards: 1, auto_expand_replicas: '0-1' },
      });
    } catch (error) {
      if (errorTypeOf(error) !== 'resource_already_exists_exception') throw error;
    }
    // Another replica may have just created it: wait until its shard can take reads and writes.
    await this.client.cluster.health({ index: this.index, wait_for_status: 'yellow', timeout: '30s' });
  }

  /** A document by id, real time; undefined when there is none. A missing index is a failure, not "none". */
  private async get(id: string, action: string): Promise<VersionedDoc | undefined> {
    return getVersioned(this.client, this.index, id, action);
  }

  /** Every document of a query, page by page in `sort` order, as [source, id]. */
  private async list(
    query: estypes.QueryDslQueryContainer,
    sort: estypes.Sort,
    action: string,
  ): Promise<[unknown, string][]> {
    const docs: [unknown, string][] = [];
    let after: (string | number)[] | undefined;
    for (;;) {
      let response: unknown;
      try {
        response = await this.client.search({
          index: this.index,
          size: pageSize,
          query,
          sort,
          track_total_hits: false,
          _source_excludes: ['secret_hash'],
          ...(after === undefined ? {} : { search_after: after }),
        });
      } catch (error) {
        throw esFailure(error, action);
      }
      const hits = Hits.safeParse(response);
      if (!hits.success) {
        throw new LightmemError('internal', `elasticsearch ${action}: unexpected answer`, {
          cause: hits.error,
        });
      }
      for (const hit of hits.data.hits.hits) docs.push([hit._source, hit._id]);
      const last = hits.data.hits.hits.at(-1);
      if (last === undefined || hits.data.hits.hits.length < pageSize) return docs;
      after = last.sort;
    }
  }
}

function tenantDocId(tenantId: string): string {
  return `tenant:${tenantId}`;
}

function keyDocId(keyId: string): string {
  return `key:${keyId}`;
}

function decode<T>(schema: z.ZodType<T>, source: unknown, id: string): T {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    throw new LightmemError('storage_corrupt', `tenant directory document ${id} is unreadable`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}

function tenantRecord(doc: TenantDoc): TenantRecord {
  return { tenantId: doc.tenant_id, createdAt: doc.created_at };
}

/** The listed form of a key: everything but the secret's hash. */
function keyRecord(doc: ListedKeyDoc): ApiKeyRecord {
  return {
    keyId: doc.key_id,
    tenantId: doc.tenant_id,
    scopes: doc.scopes,
    name: doc.name,
    createdAt: doc.created_at,
    revokedAt: doc.revoked_at,
  };
}
