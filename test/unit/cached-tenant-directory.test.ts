import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { SqliteTenantDirectory } from '../../services/adapters/sqlite/sqlite-tenant-directory.js';
import { CachedTenantDirectory } from '../../services/app/cached-tenant-directory.js';
import { generateApiKey, parseApiKey } from '../../services/core/api-keys.js';
import { UnavailableError } from '../../services/core/errors.js';
import type { Principal, TenantDirectory } from '../../services/core/ports/tenant-directory.js';

/** A directory that counts the tokens it is asked about; `authenticate` can be replaced. */
interface Spy extends TenantDirectory {
  readonly asked: string[];
  authenticateWith: ((token: string) => Promise<Principal | null>) | null;
}

function spy(inner: TenantDirectory): Spy {
  const directory: Spy = {
    asked: [],
    authenticateWith: null,
    createTenant: (id) => inner.createTenant(id),
    tenant: (id) => inner.tenant(id),
    tenants: () => inner.tenants(),
    createKey: (input) => inner.createKey(input),
    keys: (id) => inner.keys(id),
    revokeKey: (keyId, tenantId) => inner.revokeKey(keyId, tenantId),
    authenticate: (token) => {
      directory.asked.push(token);
      return (directory.authenticateWith ?? ((t: string) => inner.authenticate(t)))(token);
    },
    close: () => inner.close(),
  };
  return directory;
}

async function setup(options: { ttlMs?: number; maxEntries?: number } = {}): Promise<{
  shared: Spy;
  cached: CachedTenantDirectory;
  clock: { now: () => number; advance: (ms: number) => void };
  issue: () => Promise<{ apiKey: string; keyId: string }>;
}> {
  let now = 1_000_000;
  const clock = { now: () => now, advance: (ms: number) => void (now += ms) };
  const shared = spy(SqliteTenantDirectory.open(':memory:', { clock }));
  await shared.createTenant('brand-a');
  const cached = new CachedTenantDirectory(shared, { clock, ...options });
  const issue = async (): Promise<{ apiKey: string; keyId: string }> => {
    const { apiKey, key } = await shared.createKey({ tenantId: 'brand-a', scopes: ['read'] });
    return { apiKey, keyId: key.keyId };
  };
  return { shared, cached, clock, issue };
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

describe('CachedTenantDirectory', () => {
  it('serves a key revoked elsewhere until its answer is ttl old, then refuses it', async () => {
    const { shared, cached, clock, issue } = await setup({ ttlMs: 2_000 });
    try {
      const { apiKey, keyId } = await issue();
      assert.equal((await cached.authenticate(apiKey))?.tenantId, 'brand-a');
      // Another replica revokes: this one does not know.
      await shared.revokeKey(keyId);
      clock.advance(1_999);
      assert.equal((await cached.authenticate(apiKey))?.keyId, keyId, 'still cached before the ttl');
      assert.equal(shared.asked.length, 1);
      clock.advance(1);
      assert.equal(await cached.authenticate(apiKey), null, 'refused once the answer is ttl old');
      assert.equal(shared.asked.length, 2);
    } finally {
      await cached.close();
    }
  });

  it('refuses a key revoked through it at once', async () => {
    const { cached, issue } = await setup();
    try {
      const { apiKey, keyId } = await issue();
      assert.notEqual(await cached.authenticate(apiKey), null);
      assert.notEqual((await cached.revokeKey(keyId)).revokedAt, null);
      assert.equal(await cached.authenticate(apiKey), null);
    } finally {
      await cached.close();
    }
  });

  it('caches refusals too (unknown key, wrong secret) for the ttl; malformed tokens never reach the store', async () => {
    const { shared, cached, clock, issue } = await setup({ ttlMs: 2_000 });
    try {
      const unknown = generateApiKey().token;
      const { apiKey } = await issue();
      const wrongSecret = `lm_${parseApiKey(apiKey)!.keyId}_${generateApiKey().secret}`;
      for (let i = 0; i < 3; i++) {
        assert.equal(await cached.authenticate(unknown), null);
        assert.equal(await cached.authenticate(wrongSecret), null);
        assert.equal(await cached.authenticate('Bearer nonsense'), null);
      }
      assert.deepEqual(shared.asked, [unknown, wrongSecret]);
      assert.notEqual(
        await cached.authenticate(apiKey),
        null,
        "a refusal cached for one token is not the key's",
      );
      clock.advance(2_000);
      assert.equal(await cached.authenticate(unknown), null);
      assert.deepEqual(shared.asked, [unknown, wrongSecret, apiKey, unknown]);
    } finally {
      await cached.close();
    }
  });

  it('keys its cache by the SHA-256 of the token, never the token or its secret', async () => {
    const { cached, issue } = await setup();
    try {
      const { apiKey } = await issue();
      const unknown = generateApiKey().token;
      await cached.authenticate(apiKey);
      await cached.authenticate(unknown);
      assert.deepEqual(cached.cachedDigests(), [sha256(apiKey), sha256(unknown)]);
      const held = JSON.stringify(cached.cachedDigests());
      for (const token of [apiKey, unknown]) {
        assert.ok(!held.includes(token) && !held.includes(parseApiKey(token)!.secret));
      }
    } finally {
      await cached.close();
    }
  });

  it('holds at most maxEntries answers, evicting the oldest', async () => {
    const { shared, cached } = await setup({ maxEntries: 2 });
    try {
      const tokens = [generateApiKey().token, generateApiKey().token, generateApiKey().token];
      for (const token of tokens) await cached.authenticate(token);
      assert.deepEqual(cached.cachedDigests(), tokens.slice(1).map(sha256));
      await cached.authenticate(tokens[2]!);
      await cached.authenticate(tokens[0]!);
      assert.deepEqual(shared.asked, [...tokens, tokens[0]]);
    } finally {
      await cached.close();
    }
  });

  it('does not cache a failure of the directory', async () => {
    const { shared, cached, issue } = await setup();
    try {
      const { apiKey } = await issue();
      shared.authenticateWith = () => Promise.reject(new UnavailableError('elasticsearch is down'));
      await assert.rejects(cached.authenticate(apiKey), UnavailableError);
      shared.authenticateWith = null;
      assert.notEqual(await cached.authenticate(apiKey), null);
      assert.equal(shared.asked.length, 2);
    } finally {
      await cached.close();
    }
  });

  it('shares one read among concurrent calls, and keeps no answer read across a revocation through it', async () => {
    const { shared, cached, issue } = await setup();
    try {
      const { apiKey, keyId } = await issue();
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      // A slow read that answers as the store was when it began: the key still worked.
      shared.authenticateWith = async () => {
        await gate;
        return { tenantId: 'brand-a', keyId, scopes: ['read'] };
      };
      const first = cached.authenticate(apiKey);
      const second = cached.authenticate(apiKey);
      assert.equal(shared.asked.length, 1, 'one read for both');
      await cached.revokeKey(keyId);
      shared.authenticateWith = null;
      const third = cached.authenticate(apiKey);
      assert.equal(await third, null, 'a call after the revocation does not join the older read');
      release();
      assert.notEqual(await first, null);
      assert.notEqual(await second, null);
      assert.equal(await cached.authenticate(apiKey), null, 'the older read was not cached');
    } finally {
      await cached.close();
    }
  });

  it('passes everything else through', async () => {
    const { cached } = await setup();
    try {
      await cached.createTenant('brand-b');
      assert.deepEqual(
        (await cached.tenants()).map((t) => t.tenantId),
        ['brand-a', 'brand-b'],
      );
      assert.equal((await cached.tenant('brand-b'))?.tenantId, 'brand-b');
      const { key } = await cached.createKey({ tenantId: 'brand-b', scopes: ['write'] });
      assert.deepEqual(await cached.keys('brand-b'), [key]);
    } finally {
      await cached.close();
    }
  });
});
