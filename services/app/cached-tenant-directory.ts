import { createHash } from 'node:crypto';
import { parseApiKey } from '../core/api-keys.js';
import { systemClock, type Clock } from '../core/ports/clock.js';
import type {
  ApiKeyRecord,
  IssuedApiKey,
  NewApiKey,
  Principal,
  TenantDirectory,
  TenantRecord,
} from '../core/ports/tenant-directory.js';

export interface CachedTenantDirectoryOptions {
  /** How long an answer of `authenticate` is reused (default 2,000 ms; 0 turns the cache off). */
  readonly ttlMs?: number | undefined;
  /** Most answers kept; past it the oldest go first (default 10,000). */
  readonly maxEntries?: number | undefined;
  readonly clock?: Clock | undefined;
}

interface CachedAnswer {
  readonly principal: Principal | null;
  readonly keyId: string;
  readonly expiresAt: number;
}

interface PendingAnswer {
  readonly answer: Promise<Principal | null>;
  readonly keyId: string;
}

export const defaultAuthCacheTtlMs = 2_000;
export const defaultAuthCacheEntries = 10_000;

/**
 * A TenantDirectory whose `authenticate` answers (a principal, or null: unknown key, wrong secret,
 * revoked) are reused for `ttlMs`, so requests do not each read the shared directory. A key revoked through
 * another instance is refused here at most `ttlMs` later (plus one read of the directory); one revoked
 * through this instance at once. Entries are keyed by the SHA-256 of the token, never the token. Concurrent
 * calls with one token share one read. Malformed tokens are refused without a read and not cached; failures
 * of the directory are not cached. Everything else passes through.
 */
export class CachedTenantDirectory implements TenantDirectory {
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly clock: Clock;
  /** In insertion order, which is expiry order (one TTL for all): the first entry is the oldest. */
  private readonly answers = new Map<string, CachedAnswer>();
  private readonly pending = new Map<string, PendingAnswer>();
  /** Bumped by every revocation through this instance: reads begun before one are not cached. */
  private revocations = 0;

  constructor(
    private readonly inner: TenantDirectory,
    options: CachedTenantDirectoryOptions = {},
  ) {
    this.ttlMs = Math.max(0, options.ttlMs ?? defaultAuthCacheTtlMs);
    this.maxEntries = Math.max(1, Math.floor(options.maxEntries ?? defaultAuthCacheEntries));
    this.clock = options.clock ?? systemClock;
  }

  async authenticate(apiKey: string): Promise<Principal | null> {
    const parsed = parseApiKey(apiKey);
    if (parsed === null) return null;
    const digest = createHash('sha256').update(apiKey, 'utf8').digest('hex');
    const cached = this.answers.get(digest);
    if (cached !== undefined) {
      if (this.clock.now() < cached.expiresAt) return cached.principal;
      this.answers.delete(digest);
    }
    const pending = this.pending.get(digest);
    if (pending !== undefined) return pending.answer;
    const answer = this.read(apiKey, digest, parsed.keyId);
    const entry: PendingAnswer = { answer, keyId: parsed.keyId };
    this.pending.set(digest, entry);
    // Only this read's entry: a revocation may have replaced it with a newer read meanwhile.
    const settle = (): void => {
      if (this.pending.get(digest) === entry) this.pending.delete(digest);
    };
    answer.then(settle, settle);
    return answer;
  }

  /** Revokes through the directory, then forgets every answer about that key. */
  async revokeKey(keyId: string, tenantId?: string): Promise<ApiKeyRecord> {
    const revoked = await this.inner.revokeKey(keyId, tenantId);
    this.forget(keyId);
    return revoked;
  }

  createTenant(tenantId: string): Promise<TenantRecord> {
    return this.inner.createTenant(tenantId);
  }

  tenant(tenantId: string): Promise<TenantRecord | undefined> {
    return this.inner.tenant(tenantId);
  }

  tenants(): Promise<TenantRecord[]> {
    return this.inner.tenants();
  }

  createKey(input: NewApiKey): Promise<IssuedApiKey> {
    return this.inner.createKey(input);
  }

  keys(tenantId?: string): Promise<ApiKeyRecord[]> {
    return this.inner.keys(tenantId);
  }

  async close(): Promise<void> {
    this.answers.clear();
    this.pending.clear();
    await this.inner.close();
  }

  /** The cache keys held (SHA-256 hex digests of tokens), oldest first: for diagnostics and tests. */
  cachedDigests(): string[] {
    return [...this.answers.keys()];
  }

  private async read(apiKey: string, digest: string, keyId: string): Promise<Principal | null> {
    const revocations = this.revocations;
    const principal = await this.inner.authenticate(apiKey);
    // A revocation through this instance while the read ran may not be in its answer: do not keep it.
    if (revocations === this.revocations && this.ttlMs > 0) this.remember(digest, principal, keyId);
    return principal;
  }

  private remember(digest: string, principal: Principal | null, keyId: string): void {
    this.answers.delete(digest);
    this.answers.set(digest, { principal, keyId, expiresAt: this.clock.now() + this.ttlMs });
    while (this.answers.size > this.maxEntries) {
      const oldest = this.answers.keys().next();
      if (oldest.done === true) break;
      this.answers.delete(oldest.value);
    }
  }

  private forget(keyId: string): void {
    this.revocations++;
    for (const [digest, answer] of this.answers) if (answer.keyId === keyId) this.answers.delete(digest);
    // Callers arriving from now on read again instead of joining a read begun before the revocation.
    for (const [digest, pending] of this.pending) if (pending.keyId === keyId) this.pending.delete(digest);
  }
}
