import type { Embedder } from '../../core/ports/embedder.js';
import type { Boundary, SegmentableTurn, Segmenter } from '../../core/ports/segmenter.js';
import type { Role } from '../../core/model/generated.js';

/**
 * How a similarity drop becomes a boundary.
 * - `adaptive` (LightMem's code, reference §5.3): τ rises from `thresholdStart` by `thresholdStep` until at
 *   least one adjacent cosine falls below it (or τ passes `thresholdMax`). The schedule was tuned on
 *   MiniLM; other encoders (bge) put unrelated turns above 0.5 and it rarely fires.
 * - `depth` (default): TextTiling-style depth of each drop, (left peak − s) + (right peak − s), relative to
 *   the buffer's own depths: a cut where depth ≥ max(`depthFloor`, mean + `depthStdFactor`·std). Works
 *   for any encoder's similarity scale and finds every deep drop in the buffer, not just the first.
 */
export type SimilarityCriterion = 'adaptive' | 'depth';

export interface SimilaritySettings {
  readonly criterion: SimilarityCriterion;
  /** Adaptive threshold schedule (reference §5.3): start, step, and the last value tried. */
  readonly thresholdStart: number;
  readonly thresholdStep: number;
  readonly thresholdMax: number;
  /** Depth criterion: how many standard deviations above the buffer's mean depth a cut must be. */
  readonly depthStdFactor: number;
  /** Depth criterion: the smallest depth that is ever a cut (a buffer on one topic has only shallow dips). */
  readonly depthFloor: number;
  /**
   * Words of each exchange that the similarity half embeds (its start: the human turn and the opening of
   * the reply); 0 = all, up to the encoder's length limit. Long assistant replies dominate the cost of
   * segmentation (LongMemEval-S: ~120k tokens a question) while their openings carry the topic.
   */
  readonly unitWords: number;
}

export const defaultSimilaritySettings: SimilaritySettings = {
  criterion: 'depth',
  thresholdStart: 0.2,
  thresholdStep: 0.05,
  thresholdMax: 0.5,
  depthStdFactor: 0.5,
  depthFloor: 0.1,
  unitWords: 64,
};

/** Roles whose turns answer someone else's: they join the unit of the turn before them. */
const responderRoles: ReadonlySet<Role> = new Set(['assistant', 'tool', 'system']);

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

/** An exchange: a human turn and the assistant/tool turns answering it. */
export interface ExchangeUnit {
  /** Index of the unit's first turn in the buffer. */
  readonly start: number;
  /** The human turn's text (what the attention half reads). */
  readonly lead: string;
  /** All the unit's text (what the similarity half embeds). */
  readonly text: string;
}

export function exchangeUnits(turns: readonly SegmentableTurn[], unitWords = 0): ExchangeUnit[] {
  const starts: number[] = [];
  turns.forEach((turn, index) => {
    if (index === 0 || !responderRoles.has(turn.role)) starts.push(index);
  });
  return starts.map((start, u) => {
    const end = starts[u + 1] ?? turns.length;
    const slice = turns.slice(start, end);
    const text = slice.map((turn) => turn.text).join(' ');
    return { start, lead: slice[0]?.text ?? '', text: unitWords > 0 ? leadingWords(text, unitWords) : text };
  });
}

/** The first `count` whitespace-separated words of `text` (all of it when it has no more). */
export function leadingWords(text: string, count: number): string {
  let seen = 0;
  const word = /\S+/g;
  for (let match = word.exec(text); match !== null; match = word.exec(text)) {
    if (++seen === count) return text.slice(0, match.index + match[0].length);
  }
  return text;
}

/** Cosine of each adjacent pair of vectors: entry i compares vector i with vector i + 1. */
export function adjacentSimilarities(vectors: readonly Float32Array[]): number[] {
  const similarities: number[] = [];
  for (let u = 1; u < vectors.length; u++) {
    const previous = vectors[u - 1];
    const current = vectors[u];
    similarities.push(previous !== undefined && current !== undefined ? cosine(previous, current) : 1);
  }
  return similarities;
}

/** Drops below a threshold that rises until at least one is found (LightMem's adaptive τ). */
function adaptiveDrops(similarities: readonly number[], settings: SimilaritySettings): Drop[] {
  const { thresholdStart, thresholdStep, thresholdMax } = settings;
  // Integer steps avoid floating drift (0.2 + 6 × 0.05 must reach 0.5).
  const steps = Math.round((thresholdMax - thresholdStart) / thresholdStep);
  for (let step = 0; step <= steps; step++) {
    const threshold = thresholdStart + step * thresholdStep;
    const drops: Drop[] = [];
    similarities.forEach((similarity, pair) => {
      if (similarity < threshold) drops.push({ pair, similarity, threshold });
    });
    if (drops.length > 0) return drops;
  }
  return [];
}

/**
 * Depth of each drop (TextTiling): how far the similarity falls below the highest similarity on its left
 * and on its right, summed.
 */
export function depthScores(similarities: readonly number[]): number[] {
  const n = similarities.length;
  const left: number[] = [];
  let peak = -Infinity;
  for (let i = 0; i < n; i++) left.push((peak = Math.max(peak, similarities[i] ?? 0)));
  const right = new Array<number>(n).fill(0);
  peak = -Infinity;
  for (let i = n - 1; i >= 0; i--) right[i] = peak = Math.max(peak, similarities[i] ?? 0);
  return similarities.map((s, i) => (left[i] ?? s) - s + ((right[i] ?? s) - s));
}

/** Drops whose depth stands out in the buffer (see `SimilarityCriterion`). */
function depthDrops(similarities: readonly number[], settings: SimilaritySettings): Drop[] {
  const depths = depthScores(similarities);
  if (depths.length === 0) return [];
  const mean = depths.reduce((a, b) => a + b, 0) / depths.length;
  const std = Math.sqrt(depths.reduce((a, d) => a + (d - mean) ** 2, 0) / depths.length);
  const cutoff = Math.max(settings.depthFloor, mean + settings.depthStdFactor * std);
  const drops: Drop[] = [];
  depths.forEach((depth, pair) => {
    const similarity = similarities[pair] ?? 1;
    // Reported as a similarity threshold: below this level the drop here would be deep enough.
    if (depth > 0 && depth >= cutoff)
      drops.push({ pair, similarity, threshold: similarity + depth - cutoff });
  });
  return drops;
}

interface Drop {
  /** Index of the pair: between unit `pair` and unit `pair + 1`. */
  readonly pair: number;
  readonly similarity: number;
  readonly threshold: number;
}

/** Similarity boundaries B2 over units, reported as turn indices (where each new unit starts). */
export function similarityCuts(
  units: readonly ExchangeUnit[],
  vectors: readonly Float32Array[],
  settings: SimilaritySettings,
): Boundary[] {
  const similarities = adjacentSimilarities(vectors);
  const drops =
    settings.criterion === 'adaptive'
      ? adaptiveDrops(similarities, settings)
      : depthDrops(similarities, settings);
  const cuts: Boundary[] = [];
  for (const { pair, similarity, threshold } of drops) {
    const index = units[pair + 1]?.start;
    if (index !== undefined) cuts.push({ index, reason: 'similarity_drop', similarity, threshold });
  }
  return cuts;
}

/** Short description of the settings for version strings (a change of any of them re-segments). */
export function similarityVersion(s: SimilaritySettings): string {
  return (
    (s.criterion === 'adaptive'
      ? `adaptive${s.thresholdStart}+${s.thresholdStep}..${s.thresholdMax}`
      : `depth${s.depthStdFactor}σ≥${s.depthFloor}`) + (s.unitWords > 0 ? `;words${s.unitWords}` : '')
  );
}

/**
 * Embedding-similarity drops between adjacent exchange units (a speaker's turn plus the assistant's reply),
 * with the adaptive threshold of LightMem: τ starts low and rises by a step until at least one drop is
 * found or τ passes its maximum. Works for multi-party conversations: every human turn starts a unit.
 */
export class SimilaritySegmenter implements Segmenter {
  readonly version: string;
  readonly capability: string;

  constructor(
    private readonly embedder: Embedder,
    private readonly settings: SimilaritySettings = defaultSimilaritySettings,
  ) {
    this.version = `similarity-v1(${embedder.id};${similarityVersion(settings)})`;
    this.capability = `topic boundaries from embedding-similarity drops (${embedder.id}); attention half not installed`;
  }

  async boundaries(turns: readonly SegmentableTurn[]): Promise<Boundary[]> {
    const units = exchangeUnits(turns, this.settings.unitWords);
    if (units.length < 2) return [];
    const vectors = await this.embedder.embed(units.map((unit) => unit.text));
    return similarityCuts(units, vectors, this.settings);
  }
}
