import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  apiKeyScopes,
  generateApiKey,
  hashSecret,
  isKeyId,
  parseApiKey,
  scopeAllows,
  secretMatches,
  type ApiKeyScope,
} from '../../services/core/api-keys.js';

describe('API keys', () => {
  it('generates lm_<16 hex>_<32 bytes base64url> tokens that parse back, each different', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const key = generateApiKey();
      assert.match(key.keyId, /^[0-9a-f]{16}$/);
      assert.equal(Buffer.from(key.secret, 'base64url').length, 32);
      assert.equal(key.token, `lm_${key.keyId}_${key.secret}`);
      assert.deepEqual(parseApiKey(key.token), { keyId: key.keyId, secret: key.secret });
      assert.ok(isKeyId(key.keyId));
      seen.add(key.keyId).add(key.secret);
    }
    assert.equal(seen.size, 400);
  });

  it('parses only well-formed tokens and never throws, whatever it is given', () => {
    const { token, keyId, secret } = generateApiKey();
    const bad: unknown[] = [
      '',
      'lm_',
      `${token}=`,
      token.slice(1),
      `lm-${keyId}_${secret}`,
      `lm_${keyId.toUpperCase()}_${secret}`,
      `lm_${keyId.slice(0, 15)}g_${secret}`,
      `lm_${keyId}_${secret.slice(0, 42)}+`,
      `lm_${keyId}_${secret.slice(0, 42)}=`,
      `lm_${keyId}_${secret.slice(0, 42)}\n`,
      `lm_${keyId}_${secret}\n`,
      `\u0000${token}`,
      'x'.repeat(10_000_000),
      undefined,
      null,
      42,
      {},
      ['lm_'],
      Symbol('token'),
    ];
    for (const value of bad) assert.equal(parseApiKey(value), null, String(value).slice(0, 80));
    assert.ok(!isKeyId('0123456789ABCDEF') && !isKeyId('0123456789abcde') && !isKeyId(undefined));
  });

  it('hashes secrets with SHA-256 and compares them in constant time', () => {
    assert.equal(hashSecret('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const { secret } = generateApiKey();
    const stored = hashSecret(secret);
    assert.ok(secretMatches(secret, stored));
    assert.ok(!secretMatches(`${secret}x`, stored));
    assert.ok(!secretMatches(secret, stored.slice(0, 63)), 'a truncated hash does not match (nor throw)');
    assert.ok(!secretMatches(secret, stored.toUpperCase()));
    assert.ok(!secretMatches(secret, ''));
  });

  it('ranks scopes: admin implies write implies read', () => {
    const cases: [ApiKeyScope[], ApiKeyScope, boolean][] = [
      [['read'], 'read', true],
      [['read'], 'write', false],
      [['read'], 'admin', false],
      [['write'], 'read', true],
      [['write'], 'write', true],
      [['write'], 'admin', false],
      [['admin'], 'read', true],
      [['admin'], 'write', true],
      [['admin'], 'admin', true],
      [['read', 'write'], 'write', true],
      [['read', 'write'], 'admin', false],
      [[], 'read', false],
    ];
    for (const [granted, needed, allowed] of cases) {
      assert.equal(scopeAllows(granted, needed), allowed, `${granted.join('+') || 'none'} → ${needed}`);
    }
    assert.deepEqual(apiKeyScopes, ['read', 'write', 'admin']);
  });
});
