import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashSecret, parseApiKey } from '../../services/core/api-keys.js';
import { LightmemError } from '../../services/core/errors.js';
import type { Clock } from '../../services/core/ports/clock.js';
import type { TenantDirectory } from '../../services/core/ports/tenant-directory.js';

export interface TenantDirectoryFixture {
  /** A directory over a fresh, empty store, stamping times with `clock`. */
  open: (clock: Clock) => Promise<TenantDirectory>;
  /** A second directory over the same store as `directory` (another process, another API replica). */
  sibling: (directory: TenantDirectory, clock: Clock) => Promise<TenantDirectory>;
}

/** A clock that stays where a test puts it. */
function manualClock(start = 1_700_000_000_000): Clock & { set: (at: number) => void } {
  let now = start;
  return { now: () => now, set: (at) => (now = at) };
}

async function rejectsWith(
  work: Promise<unknown>,
  code: LightmemError['code'],
  field?: string,
  message?: string,
): Promise<void> {
  await assert.rejects(
    work,
    (error: unknown) => {
      assert.ok(error instanceof LightmemError, `a LightmemError, got ${String(error)}`);
      assert.equal(error.code, code, message);
      if (field !== undefined) assert.equal(error.field, field, message);
      return true;
    },
    message,
  );
}

/** What every TenantDirectory must do. */
export function tenantDirectoryContract(name: string, fixture: TenantDirectoryFixture): void {
  const withDirectory = async (
    work: (directory: TenantDirectory, clock: ReturnType<typeof manualClock>) => Promise<void>,
  ): Promise<void> => {
    const clock = manualClock();
    const directory = await fixture.open(clock);
    try {
      await work(directory, clock);
    } finally {
      await directory.close();
    }
  };

  describe(`${name} (TenantDirectory contract)`, () => {
    it('creates tenants once: a second creation is a conflict; lists them by id', () =>
      withDirectory(async (directory, clock) => {
        assert.deepEqual(await directory.createTenant('brand-b'), {
          tenantId: 'brand-b',
          createdAt: clock.now(),
        });
        clock.set(clock.now() + 1_000);
        await directory.createTenant('Brand_A.eu-1');
        await rejectsWith(directory.createTenant('brand-b'), 'conflict');
        assert.deepEqual(await directory.tenant('brand-b'), {
          tenantId: 'brand-b',
          createdAt: 1_700_000_000_000,
        });
        assert.equal(await directory.tenant('brand-c'), undefined);
        assert.deepEqual(
          (await directory.tenants()).map((t) => t.tenantId),
          ['Brand_A.eu-1', 'brand-b'],
        );
      }));

    it('refuses malformed tenant ids with invalid_input on field tenantId', () =>
      withDirectory(async (directory) => {
        for (const bad of [
          '',
          '.hidden',
          '-flag',
          'a b',
          'a/b',
          'tenant:x',
          'ünï',
          'x'.repeat(129),
          'a\nb',
        ]) {
          await rejectsWith(directory.createTenant(bad), 'invalid_input', 'tenantId', JSON.stringify(bad));
          await rejectsWith(
            directory.createKey({ tenantId: bad, scopes: ['read'] }),
            'invalid_input',
            'tenantId',
            JSON.stringify(bad),
          );
        }
        await directory.createTenant('x'.repeat(128));
        await directory.createTenant('_');
        assert.deepEqual(await directory.tenants(), [
          { tenantId: '_', createdAt: 1_700_000_000_000 },
          { tenantId: 'x'.repeat(128), createdAt: 1_700_000_000_000 },
        ]);
      }));

    it('makes keys only for existing tenants and with known scopes', () =>
      withDirectory(async (directory) => {
        await rejectsWith(directory.createKey({ tenantId: 'nobody', scopes: ['read'] }), 'not_found');
        await directory.createTenant('brand-a');
        await rejectsWith(
          directory.createKey({ tenantId: 'brand-a', scopes: [] }),
          'invalid_input',
          'scopes',
        );
        await rejectsWith(
          // @ts-expect-error: a scope that does not exist, as a caller outside TypeScript could send
          directory.createKey({ tenantId: 'brand-a', scopes: ['root'] }),
          'invalid_input',
          'scopes',
        );
        await rejectsWith(
          directory.createKey({ tenantId: 'brand-a', scopes: ['read'], name: '' }),
          'invalid_input',
          'name',
        );
        assert.deepEqual(await directory.keys(), []);
      }));

    it('authenticates a new key as its tenant with its scopes; the token is shown once, not stored', () =>
      withDirectory(async (directory, clock) => {
        await directory.createTenant('brand-a');
        clock.set(1_700_000_005_000);
        const { apiKey, key } = await directory.createKey({
          tenantId: 'brand-a',
          scopes: ['write', 'read', 'write'],
          name: 'ci deploy',
        });
        const parsed = parseApiKey(apiKey);
        assert.ok(parsed !== null, 'the token has the lm_<keyId>_<secret> form');
        assert.deepEqual(key, {
          keyId: parsed.keyId,
          tenantId: 'brand-a',
          scopes: ['read', 'write'],
          name: 'ci deploy',
          createdAt: 1_700_000_005_000,
          revokedAt: null,
        });
        assert.deepEqual(await directory.authenticate(apiKey), {
          tenantId: 'brand-a',
          keyId: parsed.keyId,
          scopes: ['read', 'write'],
        });

        const listed = await directory.keys();
        assert.deepEqual(listed, [key]);
        const text = JSON.stringify(listed);
        for (const secretish of [apiKey, parsed.secret, hashSecret(parsed.secret)]) {
          assert.ok(!text.includes(secretish), 'a listing holds neither the secret nor its hash');
        }
        const unnamed = await directory.createKey({ tenantId: 'brand-a', scopes: ['admin'] });
        assert.equal(unnamed.key.name, null);
        assert.notEqual(unnamed.key.keyId, key.keyId);
        assert.deepEqual((await directory.authenticate(unnamed.apiKey))?.scopes, ['admin']);
      }));

    it('refuses a wrong secret, an unknown key id and anything malformed (null, no error)', () =>
      withDirectory(async (directory) => {
        await directory.createTenant('brand-a');
        const { apiKey, key } = await directory.createKey({ tenantId: 'brand-a', scopes: ['read'] });
        const parsed = parseApiKey(apiKey)!;
        const otherSecret = Buffer.alloc(32, 7).toString('base64url');
        const lastChar = parsed.secret.endsWith('A') ? 'Q' : 'A';
        const refused = [
          `lm_${key.keyId}_${otherSecret}`,
          `lm_${key.keyId}_${parsed.secret.slice(0, -1)}${lastChar}`,
          `lm_${'0'.repeat(16)}_${parsed.secret}`,
          '',
          'lm_',
          `${apiKey}x`,
          apiKey.slice(0, -1),
          ` ${apiKey}`,
          `Bearer ${apiKey}`,
          apiKey.toUpperCase(),
          `lm_${key.keyId.toUpperCase()}_${parsed.secret}`,
          `lm_${key.keyId}_${parsed.secret.replace(/^./, '+')}`,
          'lm_../../etc/passwd_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
          'x'.repeat(100_000),
        ];
        for (const token of refused) {
          assert.equal(await directory.authenticate(token), null, JSON.stringify(token.slice(0, 80)));
        }
        assert.notEqual(await directory.authenticate(apiKey), null);
      }));

    it('revokes: refused at once, listed with revokedAt; again is a no-op; unknown or foreign keys are not_found', () =>
      withDirectory(async (directory, clock) => {
        await directory.createTenant('brand-a');
        await directory.createTenant('brand-b');
        const a = await directory.createKey({ tenantId: 'brand-a', scopes: ['read', 'write'] });
        const b = await directory.createKey({ tenantId: 'brand-b', scopes: ['admin'] });

        await rejectsWith(directory.revokeKey(a.key.keyId, 'brand-b'), 'not_found', 'keyId');
        assert.notEqual(
          await directory.authenticate(a.apiKey),
          null,
          "another tenant's revoke left it alone",
        );
        await rejectsWith(directory.revokeKey('0123456789abcdef'), 'not_found', 'keyId');
        await rejectsWith(directory.revokeKey('not a key id'), 'invalid_input', 'keyId');

        clock.set(1_700_000_060_000);
        const revoked = await directory.revokeKey(a.key.keyId, 'brand-a');
        assert.deepEqual(revoked, { ...a.key, revokedAt: 1_700_000_060_000 });
        assert.equal(await directory.authenticate(a.apiKey), null);

        clock.set(1_700_000_090_000);
        assert.deepEqual(
          await directory.revokeKey(a.key.keyId),
          revoked,
          'a second revoke keeps the first time',
        );
        assert.deepEqual(await directory.keys('brand-a'), [revoked]);
        assert.deepEqual(await directory.authenticate(b.apiKey), {
          tenantId: 'brand-b',
          keyId: b.key.keyId,
          scopes: ['admin'],
        });
      }));

    it("lists one tenant's keys or everyone's, oldest first", () =>
      withDirectory(async (directory, clock) => {
        await directory.createTenant('brand-a');
        await directory.createTenant('brand-b');
        const keys = [];
        for (const [at, tenantId] of [
          [3, 'brand-a'],
          [1, 'brand-b'],
          [2, 'brand-a'],
        ] as const) {
          clock.set(1_700_000_000_000 + at);
          keys.push((await directory.createKey({ tenantId, scopes: ['read'] })).key);
        }
        const [a3, b1, a2] = keys;
        assert.deepEqual(await directory.keys('brand-a'), [a2, a3]);
        assert.deepEqual(await directory.keys('brand-b'), [b1]);
        assert.deepEqual(await directory.keys(), [b1, a2, a3]);
        assert.deepEqual(await directory.keys('brand-c'), [], 'a tenant that does not exist has no keys');
      }));

    it("two directories over one store see each other's writes at once; a revocation included", async () => {
      const clock = manualClock();
      const first = await fixture.open(clock);
      const second = await fixture.sibling(first, clock);
      try {
        await first.createTenant('brand-a');
        assert.deepEqual(await second.tenant('brand-a'), { tenantId: 'brand-a', createdAt: clock.now() });
        await rejectsWith(second.createTenant('brand-a'), 'conflict');
        const { apiKey, key } = await second.createKey({ tenantId: 'brand-a', scopes: ['write'] });
        assert.equal((await first.authenticate(apiKey))?.tenantId, 'brand-a');
        assert.deepEqual(await first.keys('brand-a'), [key]);

        await second.revokeKey(key.keyId);
        assert.equal(await first.authenticate(apiKey), null, 'revoked elsewhere: refused by the next call');
        assert.notEqual((await first.keys())[0]?.revokedAt, null);
        assert.deepEqual(
          (await first.tenants()).map((t) => t.tenantId),
          ['brand-a'],
        );
      } finally {
        await second.close();
        await first.close();
      }
    });
  });
}
