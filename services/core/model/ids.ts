import { createHash } from 'node:crypto';

/**
 * Deterministic ids: the same inputs always give the same id, so re-processing the same turns with the
 * same pipeline version yields the same memories (idempotent upserts), and a new version yields new ids.
 */
export function stableId(prefix: string, parts: readonly string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) {
    // Length-prefix each part so that ("ab","c") and ("a","bc") differ.
    hash.update(`${part.length}:${part}|`);
  }
  return `${prefix}_${hash.digest('hex').slice(0, 32)}`;
}

export function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}
