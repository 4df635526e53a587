import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  isSealed,
  seal,
  sealedRef,
  unseal,
  unwrapKey,
  userKeyBytes,
  wrapKey,
} from '../../services/adapters/kafka/sealed-value.js';
import { loadConfig } from '../../services/runtime/load-config.js';
import { LightmemError } from '../../services/core/errors.js';

const ref = { tenantId: 'brand-a', userId: 'u1', keyId: 'k-1' };
const plain = Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), Buffer.from('My axolotl is called Quillfeather')]);

function refused(run: () => unknown): LightmemError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof LightmemError);
    return error;
  }
  assert.fail('expected an error');
}

describe('sealed values (crypto-shredding of Kafka records)', () => {
  it('round-trips with the key, names its owner in the clear, and hides the text', () => {
    const key = randomBytes(userKeyBytes);
    const sealed = seal(plain, ref, key);
    assert.ok(isSealed(sealed));
    assert.ok(!isSealed(plain), 'a registry-encoded value (magic 0) reads as plain');
    assert.deepEqual(sealedRef(sealed), ref);
    assert.ok(!sealed.toString('latin1').includes('Quillfeather'));
    assert.deepEqual(unseal(sealed, key), plain);
    assert.notDeepEqual(seal(plain, ref, key), sealed, 'a fresh nonce each time');
  });

  it('another key, an altered byte or a value moved to another owner does not open (non-retryable)', () => {
    const key = randomBytes(userKeyBytes);
    const sealed = seal(plain, ref, key);
    assert.equal(refused(() => unseal(sealed, randomBytes(userKeyBytes))).retryable, false);
    const altered = Buffer.from(sealed);
    altered[altered.length - 20] = (altered[altered.length - 20] ?? 0) ^ 1;
    assert.equal(refused(() => unseal(altered, key)).code, 'invalid_input');
    // The owner is bound as associated data: renaming it breaks the seal.
    const renamed = Buffer.from(sealed.toString('latin1').replace('"u1"', '"u2"'), 'latin1');
    assert.deepEqual(sealedRef(renamed), { ...ref, userId: 'u2' });
    assert.equal(refused(() => unseal(renamed, key)).code, 'invalid_input');
  });

  it('refuses malformed values with a typed error', () => {
    for (const bad of [
      Buffer.from([0x4c]),
      Buffer.from([0x4c, 9, 0, 0]),
      Buffer.from([0x4c, 1, 0, 3, 0x7b, 0x7d, 0x7d]),
    ]) {
      assert.equal(refused(() => sealedRef(bad)).code, 'invalid_input');
    }
  });

  it('user keys wrapped with the key-encryption key open only with it, and only under their own record', () => {
    const kek = randomBytes(32);
    const key = randomBytes(userKeyBytes);
    const label = '["key","brand-a","u1","k-1"]';
    const wrapped = wrapKey(key, kek, label);
    assert.ok(!wrapped.includes(key), 'the key is not in the clear');
    assert.deepEqual(unwrapKey(wrapped, kek, label), key);
    assert.equal(unwrapKey(wrapped, randomBytes(32), label), null, 'another key-encryption key');
    assert.equal(unwrapKey(wrapped, kek, '["key","brand-a","u2","k-1"]'), null, 'moved to another user');
    assert.equal(unwrapKey(Buffer.from([1, 2, 3]), kek, label), null);
  });

  it('the key-encryption key comes from LIGHTMEM_KAFKA_KEY_ENCRYPTION_KEY and must be 32 bytes', () => {
    const value = randomBytes(32).toString('base64');
    const config = loadConfig({ env: { LIGHTMEM_KAFKA_KEY_ENCRYPTION_KEY: value } });
    assert.equal(config.kafka.keyEncryptionKey, value);
    assert.throws(
      () => loadConfig({ env: { LIGHTMEM_KAFKA_KEY_ENCRYPTION_KEY: randomBytes(16).toString('base64') } }),
      (error: unknown) =>
        error instanceof LightmemError &&
        /keyEncryptionKey/.test(error.message) &&
        !error.message.includes(value),
    );
  });
});
