import { LightmemError } from '../../core/errors.js';

/**
 * Linear fusion of a lexical (BM25) and a semantic (cosine) candidate list. Kept apart from SQLite so it
 * can be reasoned about (and reused) on its own.
 */

export interface FusionWeights {
  readonly lexicalWeight: number;
  readonly semanticWeight: number;
}

export const DEFAULT_FUSION: FusionWeights = { lexicalWeight: 0.5, semanticWeight: 0.5 };

/** Validates the weights and scales them to sum to 1, so fused scores stay in [0, 1]. */
export function normaliseWeights(weights: FusionWeights): FusionWeights {
  const { lexicalWeight: wl, semanticWeight: ws } = weights;
  if (!Number.isFinite(wl) || !Number.isFinite(ws) || wl < 0 || ws < 0 || wl + ws <= 0) {
    throw new LightmemError(
      'config_invalid',
      `fusion weights must be finite, >= 0 and not both 0 (got ${wl}, ${ws})`,
      {
        field: 'fusion',
      },
    );
  }
  return { lexicalWeight: wl / (wl + ws), semanticWeight: ws / (wl + ws) };
}

export interface Candidate<T> {
  readonly key: number;
  readonly item: T;
  readonly occurredAt: number;
  readonly id: string;
}

export interface Fused<T> {
  readonly item: T;
  readonly score: number;
  readonly lexical: number | null;
  readonly semantic: number | null;
}

const clamp01 = (value: number): number => (value > 1 ? 1 : value > 0 ? value : 0);

/**
 * `lexical` carries raw FTS5 bm25() values (negative, lower is better) and is normalised by the best one;
 * `semantic` carries cosine distances, turned into similarities (1 - distance) clamped to [0, 1]. When
 * `semanticActive` is false (no query vector, or no stored vectors) the score is the lexical part alone.
 * Ordered by score desc, then occurredAt desc, then id; at most `limit` results.
 */
export function fuse<T>(
  lexical: readonly (Candidate<T> & { readonly bm25: number })[],
  semantic: readonly (Candidate<T> & { readonly distance: number })[],
  weights: FusionWeights,
  semanticActive: boolean,
  limit: number,
): Fused<T>[] {
  interface Entry {
    candidate: Candidate<T>;
    lexical: number | null;
    semantic: number | null;
  }
  const byKey = new Map<number, Entry>();
  let best = 0;
  for (const c of lexical) if (c.bm25 < best) best = c.bm25;
  for (const c of lexical) {
    // best < 0 whenever anything matched; the guard keeps a degenerate all-zero list from dividing by 0.
    const score = best < 0 ? clamp01(c.bm25 / best) : 1;
    byKey.set(c.key, { candidate: c, lexical: score, semantic: null });
  }
  if (semanticActive) {
    for (const c of semantic) {
      if (!Number.isFinite(c.distance)) continue; // e.g. a zero vector: no meaningful similarity
      const similarity = clamp01(1 - c.distance);
      const existing = byKey.get(c.key);
      if (existing === undefined) byKey.set(c.key, { candidate: c, lexical: null, semantic: similarity });
      else existing.semantic = similarity;
    }
  }
  const wl = semanticActive ? weights.lexicalWeight : 1;
  const ws = semanticActive ? weights.semanticWeight : 0;
  const scored = [...byKey.values()]
    .map((e) => ({ ...e, score: clamp01(wl * (e.lexical ?? 0) + ws * (e.semantic ?? 0)) }))
    // KNN ranks every vector in scope; one with no similarity and no word in common is not a hit.
    .filter((e) => e.score > 0);
  scored.sort(
    (a, b) =>
      b.score - a.score ||
      b.candidate.occurredAt - a.candidate.occurredAt ||
      (a.candidate.id < b.candidate.id ? -1 : a.candidate.id > b.candidate.id ? 1 : 0),
  );
  return scored.slice(0, limit).map((e) => ({
    item: e.candidate.item,
    score: e.score,
    lexical: e.lexical,
    semantic: e.semantic,
  }));
}
