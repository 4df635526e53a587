import { z } from 'zod';
import { apiKeyScopes, isKeyId, type ApiKeyScope } from '../api-keys.js';
import { InvalidInputError } from '../errors.js';

export type { ApiKeyScope } from '../api-keys.js';

/** A tenant id: 1–128 characters of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`. */
export const TenantId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/);
export type TenantId = z.infer<typeof TenantId>;

/** The scopes of a new key: at least one known scope. */
export const ApiKeyScopes = z.array(z.enum(apiKeyScopes)).min(1).max(16);
/** A label for people (`ci deploy`, `brand-a api`): 1–200 printable characters. */
export const ApiKeyName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]+$/u);

export interface TenantRecord {
  readonly tenantId: string;
  /** Epoch ms. */
  readonly createdAt: number;
}

/** A key as the directory lists it: never its secret nor the secret's hash. */
export interface ApiKeyRecord {
  readonly keyId: string;
  readonly tenantId: string;
  /** Distinct, in `apiKeyScopes` order. */
  readonly scopes: readonly ApiKeyScope[];
  readonly name: string | null;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms of the (first) revocation; null while the key works. */
  readonly revokedAt: number | null;
}

export interface NewApiKey {
  readonly tenantId: string;
  readonly scopes: readonly ApiKeyScope[];
  readonly name?: string | undefined;
}

/** A key just made: `apiKey` is the token to hand to the caller, once; the directory keeps its hash only. */
export interface IssuedApiKey {
  readonly apiKey: string;
  readonly key: ApiKeyRecord;
}

/** Who a request is: the tenant comes from the key, and only from it. */
export interface Principal {
  readonly tenantId: string;
  readonly keyId: string;
  readonly scopes: readonly ApiKeyScope[];
}

/**
 * Tenants and their API keys. Keys are random tokens shown once (`createKey`); the directory keeps the
 * SHA-256 of their secret and compares it in constant time. There is one directory per deployment (a SQLite
 * file shared by the processes of a data dir; an Elasticsearch index shared by every API replica), and a
 * write made through one instance is seen by every other instance's next call: no adapter caches (a cache
 * is a decorator the caller chooses, with its own staleness bound).
 *
 * Invalid ids are `InvalidInputError` (code `invalid_input`, with the field); a storage failure is a
 * retryable `storage_unavailable` error, never an answer (`authenticate` does not turn an outage into null).
 */
export interface TenantDirectory {
  /** Creates a tenant; `conflict` if it exists (whoever created it). */
  createTenant(tenantId: string): Promise<TenantRecord>;
  /** The tenant, or undefined. */
  tenant(tenantId: string): Promise<TenantRecord | undefined>;
  /** Every tenant, by id. */
  tenants(): Promise<TenantRecord[]>;
  /**
   * Makes a key of an existing tenant (`not_found` otherwise) with these scopes (deduplicated, at least one;
   * `invalid_input` with field `scopes` otherwise). Durable and visible to `authenticate` when it resolves.
   */
  createKey(input: NewApiKey): Promise<IssuedApiKey>;
  /**
   * The keys of one tenant, or of every tenant, revoked ones included, oldest first (then by key id).
   * A tenant with no keys, or that does not exist, has none.
   */
  keys(tenantId?: string): Promise<ApiKeyRecord[]>;
  /**
   * Revokes a key: from when this resolves, `authenticate` refuses it on every instance. `not_found` when
   * there is no such key, or when `tenantId` is given and the key is another tenant's (a tenant cannot
   * learn or touch another's keys); `invalid_input` (field `keyId`) when `keyId` is not 16 lowercase hex
   * characters. Idempotent: revoking a revoked key returns it unchanged (its first revocation time).
   */
  revokeKey(keyId: string, tenantId?: string): Promise<ApiKeyRecord>;
  /**
   * The principal of a token, or null when it is malformed, unknown, revoked or has the wrong secret (the
   * caller answers 401 to all of them alike). Adapters read the store on every call; a caching decorator
   * (`CachedTenantDirectory`) may answer from its cache for a bounded time.
   */
  authenticate(apiKey: string): Promise<Principal | null>;
  close(): Promise<void>;
}

/** A valid tenant id, or `InvalidInputError` with field `tenantId`. */
export function checkTenantId(value: unknown): TenantId {
  const parsed = TenantId.safeParse(value);
  if (!parsed.success) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 60)) : typeof value;
    throw new InvalidInputError(
      `tenantId must be 1–128 characters of letters, digits, '.', '_' or '-', not starting with '.' or '-' (got ${shown})`,
      'tenantId',
      parsed.error,
    );
  }
  return parsed.data;
}

/** A well-formed key id, or `InvalidInputError` with field `keyId`. */
export function checkKeyId(value: unknown): string {
  if (!isKeyId(value)) {
    throw new InvalidInputError('keyId must be 16 lowercase hexadecimal characters', 'keyId');
  }
  return value;
}

/** A new key's input checked, its scopes distinct and in `apiKeyScopes` order, its name or null. */
export function checkNewApiKey(input: NewApiKey): {
  tenantId: string;
  scopes: ApiKeyScope[];
  name: string | null;
} {
  const tenantId = checkTenantId(input.tenantId);
  const scopes = ApiKeyScopes.safeParse(input.scopes);
  if (!scopes.success) {
    throw new InvalidInputError(
      `scopes must be a non-empty list of ${apiKeyScopes.join(', ')}`,
      'scopes',
      scopes.error,
    );
  }
  let name: string | null = null;
  if (input.name !== undefined) {
    const parsed = ApiKeyName.safeParse(input.name);
    if (!parsed.success) {
      throw new InvalidInputError(
        'name must be 1–200 characters, no control characters',
        'name',
        parsed.error,
      );
    }
    name = parsed.data;
  }
  return { tenantId, scopes: apiKeyScopes.filter((scope) => scopes.data.includes(scope)), name };
}
