import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { InvalidInputError } from '../../core/errors.js';

/**
 * Which user key sealed a value: the data subject (tenant, user) and the id of one of their keys. It is
 * written in the clear at the head of the sealed value (the reader needs it to find the key) and bound to
 * the ciphertext as associated data, so a value cannot be moved to another user's name.
 */
export interface KeyRef {
  readonly tenantId: string;
  readonly userId: string;
  readonly keyId: string;
}

/**
 * A sealed value: `L` (0x4C, never the 0x00 that opens the registry's wire format, so plaintext written
 * before sealing existed still reads), version 1, the length of the key reference (uint16, big-endian),
 * the key reference (JSON `[tenantId, userId, keyId]`), a 12-byte nonce, the AES-256-GCM ciphertext and
 * its 16-byte tag.
 */
const magic = 0x4c;
const version = 1;
const nonceBytes = 12;
const tagBytes = 16;
export const userKeyBytes = 32;

/** Encrypts a record value (or a stage state value) with a user's key. */
export function seal(plain: Buffer, ref: KeyRef, key: Buffer): Buffer {
  const refBytes = Buffer.from(JSON.stringify([ref.tenantId, ref.userId, ref.keyId]), 'utf8');
  const head = Buffer.alloc(4);
  head[0] = magic;
  head[1] = version;
  head.writeUInt16BE(refBytes.length, 2);
  const nonce = randomBytes(nonceBytes);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(refBytes);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([head, refBytes, nonce, body, cipher.getAuthTag()]);
}

/** Whether a value is sealed (else it is plaintext, as written before sealing existed or about no user). */
export function isSealed(value: Buffer): boolean {
  return value.length > 0 && value[0] === magic;
}

/** The key reference of a sealed value. Throws a non-retryable error when the value is malformed. */
export function sealedRef(value: Buffer): KeyRef {
  return parse(value).ref;
}

/**
 * Decrypts a sealed value with the key its reference names. A value that does not authenticate (altered,
 * or the wrong key) is malformed input: non-retryable.
 */
export function unseal(value: Buffer, key: Buffer): Buffer {
  const { refBytes, nonce, body, tag } = parse(value);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(refBytes);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (error) {
    throw new InvalidInputError(
      'a sealed value does not authenticate (altered, or sealed with another key)',
      undefined,
      error,
    );
  }
}

function parse(value: Buffer): { ref: KeyRef; refBytes: Buffer; nonce: Buffer; body: Buffer; tag: Buffer } {
  if (!isSealed(value) || value.length < 4) throw malformed('it is not a sealed value');
  if (value[1] !== version) throw malformed(`unknown sealing version ${String(value[1])}`);
  const refLength = value.readUInt16BE(2);
  const refEnd = 4 + refLength;
  if (value.length < refEnd + nonceBytes + tagBytes) throw malformed('it is cut short');
  const refBytes = value.subarray(4, refEnd);
  let parsed: unknown;
  try {
    parsed = JSON.parse(refBytes.toString('utf8'));
  } catch {
    throw malformed('its key reference is not JSON');
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 3 ||
    !parsed.every((part): part is string => typeof part === 'string' && part.length > 0)
  ) {
    throw malformed('its key reference is not [tenantId, userId, keyId]');
  }
  const [tenantId, userId, keyId] = parsed as [string, string, string];
  return {
    ref: { tenantId, userId, keyId },
    refBytes,
    nonce: value.subarray(refEnd, refEnd + nonceBytes),
    body: value.subarray(refEnd + nonceBytes, value.length - tagBytes),
    tag: value.subarray(value.length - tagBytes),
  };
}

function malformed(why: string): InvalidInputError {
  return new InvalidInputError(`a sealed value is malformed: ${why}`);
}

/**
 * A user key wrapped with the deployment's key-encryption key (AES-256-GCM: nonce, ciphertext, tag), bound
 * to `label` (the keyring record it is stored under) so that it cannot be moved to another user.
 */
export function wrapKey(key: Buffer, kek: Buffer, label: string): Buffer {
  const nonce = randomBytes(nonceBytes);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  cipher.setAAD(Buffer.from(label, 'utf8'));
  const body = Buffer.concat([cipher.update(key), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** The user key `wrapKey` wrapped; null when it does not unwrap with this key-encryption key. */
export function unwrapKey(wrapped: Buffer, kek: Buffer, label: string): Buffer | null {
  if (wrapped.length < nonceBytes + tagBytes) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(0, nonceBytes));
    decipher.setAAD(Buffer.from(label, 'utf8'));
    decipher.setAuthTag(wrapped.subarray(wrapped.length - tagBytes));
    return Buffer.concat([
      decipher.update(wrapped.subarray(nonceBytes, wrapped.length - tagBytes)),
      decipher.final(),
    ]);
  } catch {
    return null;
  }
}
