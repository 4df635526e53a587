import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API keys: `lm_<keyId>_<secret>`. The key id (16 lowercase hex characters, 64 random bits) names the key
 * and is not secret: it is what `lightmem key list|revoke` shows and what a store looks a key up by. The
 * secret is 32 random bytes (256 bits) in base64url; only its hash is stored.
 */

export const apiKeyScopes = ['read', 'write', 'admin'] as const;
/** `admin` implies `write`, which implies `read`. */
export type ApiKeyScope = (typeof apiKeyScopes)[number];

export interface GeneratedApiKey {
  readonly keyId: string;
  readonly secret: string;
  /** What the caller sends (`Authorization: Bearer <token>`); shown once, never stored. */
  readonly token: string;
}

export interface ParsedApiKey {
  readonly keyId: string;
  readonly secret: string;
}

const keyIdBytes = 8;
const secretBytes = 32;
/** 16 hex characters, 43 base64url characters (no padding). */
const tokenPattern = /^lm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const tokenLength = 'lm_'.length + keyIdBytes * 2 + 1 + 43;
const keyIdPattern = /^[0-9a-f]{16}$/;
const hashPattern = /^[0-9a-f]{64}$/;

export function generateApiKey(): GeneratedApiKey {
  const keyId = randomBytes(keyIdBytes).toString('hex');
  const secret = randomBytes(secretBytes).toString('base64url');
  return { keyId, secret, token: `lm_${keyId}_${secret}` };
}

/** The key id and secret of a token, or null when it is not one (any input; never throws). */
export function parseApiKey(token: unknown): ParsedApiKey | null {
  // The length check first: a megabyte header is refused before any regex runs on it.
  if (typeof token !== 'string' || token.length !== tokenLength) return null;
  const match = tokenPattern.exec(token);
  const keyId = match?.[1];
  const secret = match?.[2];
  return keyId === undefined || secret === undefined ? null : { keyId, secret };
}

/** Whether a string has the shape of a key id (what revoke and the stores accept). */
export function isKeyId(value: unknown): value is string {
  return typeof value === 'string' && keyIdPattern.test(value);
}

/**
 * SHA-256 (hex) of a secret: what a store keeps. A fast hash is the standard choice for random,
 * high-entropy tokens (GitHub and Stripe tokens are stored this way): with 256 random bits there is nothing
 * to brute-force, so a slow password hash (bcrypt, scrypt) would only add latency to every request.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Whether `secret` hashes to `storedHash`, compared in constant time. */
export function secretMatches(secret: string, storedHash: string): boolean {
  if (!hashPattern.test(storedHash)) return false;
  const actual = Buffer.from(hashSecret(secret), 'utf8');
  const expected = Buffer.from(storedHash, 'utf8');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

const scopeRank: Record<ApiKeyScope, number> = { read: 0, write: 1, admin: 2 };

/** Whether a key with the `granted` scopes may do what needs `needed`. */
export function scopeAllows(granted: readonly ApiKeyScope[], needed: ApiKeyScope): boolean {
  return granted.some((scope) => scopeRank[scope] >= scopeRank[needed]);
}
