import { LightmemError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';
import type { SearchHit } from '../../core/ports/memory-store.js';

/**
 * Linear fusion of a lexical (BM25) and a semantic (cosine) candidate list. Store-independent: the SQLite
 * and the Elasticsearch memory stores fetch their candidates their own way and fuse them here, so both
 * rank the same way.
 */

/**
 * How the parts are scaled to [0, 1] before weighting. BM25 is always divided by the best match (no match
 * is 0, so every word match is > 0). Cosine:
 * - `minmax`: min-max over the best 100 kNN candidates (best 1, worst 0). Cosines of a sentence encoder sit in a
 *   narrow band (0.3–0.9 for bge-small), so unscaled they barely move a sum whose BM25 part spans 0–1;
 *   scaled, both lists order the fused result (LoCoMo dev, raw turns: R@B1000 0.68 → 0.75 with the
 *   speaker in the embedded text).
 * - `best`: cosine as it is (the first version; kept for comparison).
 */
export type FusionNormalization = 'minmax' | 'best';

export interface FusionWeights {
  readonly lexicalWeight: number;
  readonly semanticWeight: number;
  readonly normalization?: FusionNormalization | undefined;
}

export const DEFAULT_FUSION: FusionWeights = {
  lexicalWeight: 0.3,
  semanticWeight: 0.7,
  normalization: 'minmax',
};

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
  return {
    lexicalWeight: wl / (wl + ws),
    semanticWeight: ws / (wl + ws),
    normalization: weights.normalization ?? 'minmax',
  };
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
 * `lexical` carries BM25 values the way FTS5 bm25() reports them (negative, lower is better; a store whose
 * engine reports positive scores passes them negated); `semantic` carries cosine distances
 * (similarity = 1 - distance). BM25 is divided by the best match, the cosine scaled as
 * `weights.normalization` says, and a candidate missing from a list gets 0 for that part. The hit's `lexical` / `semantic` are the
 * scaled parts, so `score = wl·lexical + ws·semantic`. When `semanticActive` is false (no query vector, or
 * no stored vectors) the score is the lexical part alone. A candidate with no word in common and no
 * positive similarity is not a hit. Ordered by score desc, then occurredAt desc, then id; at most `limit`.
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
  const minmax = (weights.normalization ?? 'minmax') === 'minmax';
  const byKey = new Map<number, Entry>();
  let best = 0;
  for (const c of lexical) if (c.bm25 < best) best = c.bm25;
  for (const c of lexical) {
    // best < 0 whenever anything matched; the guard keeps a degenerate all-zero list from dividing by 0.
    const score = best < 0 ? clamp01(c.bm25 / best) : 1;
    byKey.set(c.key, { candidate: c, lexical: score, semantic: null });
  }
  if (semanticActive) {
    // e.g. a zero vector has no meaningful similarity; nor has a candidate pointing away from the query.
    const similar = semantic.filter((c) => Number.isFinite(c.distance) && 1 - c.distance > 0);
    const semanticScale = minmax
      ? cosineScaler(similar.map((c) => 1 - c.distance))
      : (similarity: number) => clamp01(similarity);
    for (const c of similar) {
      const part = semanticScale(1 - c.distance);
      const existing = byKey.get(c.key);
      if (existing === undefined) byKey.set(c.key, { candidate: c, lexical: null, semantic: part });
      else existing.semantic = part;
    }
  }
  const wl = semanticActive ? weights.lexicalWeight : 1;
  const ws = semanticActive ? weights.semanticWeight : 0;
  const scored = [...byKey.values()]
    .map((e) => ({ ...e, score: clamp01(wl * (e.lexical ?? 0) + ws * (e.semantic ?? 0)) }))
    // The worst of a list scales to 0: still a hit when it matched a word or is similar at all.
    .filter((e) => e.score > 0 || (wl > 0 && e.lexical !== null) || (ws > 0 && e.semantic !== null));
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

/** Fused candidates as search hits; one whose memory could not be loaded is dropped (never invented). */
export function toSearchHits<T>(
  fused: readonly Fused<T>[],
  memoryOf: (item: T) => MemoryEntry | undefined,
): SearchHit[] {
  return fused.flatMap((hit) => {
    const memory = memoryOf(hit.item);
    if (memory === undefined) return [];
    return [{ memory, score: hit.score, lexical: hit.lexical, semantic: hit.semantic }];
  });
}

/**
 * Min-max over the best `SEMANTIC_SCALE_WINDOW` cosines, so a memory's part does not depend on how many
 * candidates the caller asked for (a larger k lowers the minimum); cosines below the window's minimum are
 * 0. Where the window's cosines are nearly equal (one candidate, a narrow time filter) stretching them
 * would turn noise into rank, so they stay as they are.
 */
function cosineScaler(similarities: readonly number[]): (value: number) => number {
  const window = [...similarities].sort((a, b) => b - a).slice(0, SEMANTIC_SCALE_WINDOW);
  const max = window[0] ?? 0;
  const min = window.at(-1) ?? 0;
  const range = max - min;
  if (range < MIN_COSINE_RANGE) return (value) => clamp01(value);
  return (value) => clamp01((value - min) / range);
}

/** kNN candidates the cosine min-max looks at (the best ones). */
export const SEMANTIC_SCALE_WINDOW = 100;
/** Below this spread of the window's cosines, they are used unscaled. */
const MIN_COSINE_RANGE = 0.05;
