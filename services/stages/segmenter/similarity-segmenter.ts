import type { Embedder } from '../../core/ports/embedder.js';
import type { Boundary, SegmentableTurn, Segmenter } from '../../core/ports/segmenter.js';
import type { Role } from '../../core/model/generated.js';

export interface SimilaritySettings {
  /** Adaptive threshold schedule (reference §5.3): start, step, and the last value tried. */
  readonly thresholdStart: number;
  readonly thresholdStep: number;
  readonly thresholdMax: number;
}

export const defaultSimilaritySettings: SimilaritySettings = {
  thresholdStart: 0.2,
  thresholdStep: 0.05,
  thresholdMax: 0.5,
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

export function exchangeUnits(turns: readonly SegmentableTurn[]): ExchangeUnit[] {
  const starts: number[] = [];
  turns.forEach((turn, index) => {
    if (index === 0 || !responderRoles.has(turn.role)) starts.push(index);
  });
  return starts.map((start, u) => {
    const end = starts[u + 1] ?? turns.length;
    const slice = turns.slice(start, end);
    return { start, lead: slice[0]?.text ?? '', text: slice.map((turn) => turn.text).join(' ') };
  });
}

/**
 * Similarity boundaries B2 over units, in turn indices: with the adaptive threshold, τ rises from its
 * start by a step until at least one adjacent-unit cosine falls below it, or τ passes its maximum.
 */
export function similarityCuts(
  units: readonly ExchangeUnit[],
  vectors: readonly Float32Array[],
  settings: SimilaritySettings,
): Boundary[] {
  const similarities: number[] = [];
  for (let u = 1; u < vectors.length; u++) {
    const previous = vectors[u - 1];
    const current = vectors[u];
    similarities.push(previous !== undefined && current !== undefined ? cosine(previous, current) : 1);
  }
  const { thresholdStart, thresholdStep, thresholdMax } = settings;
  // Integer steps avoid floating drift (0.2 + 6 × 0.05 must reach 0.5).
  const steps = Math.round((thresholdMax - thresholdStart) / thresholdStep);
  for (let step = 0; step <= steps; step++) {
    const threshold = thresholdStart + step * thresholdStep;
    const cuts: Boundary[] = [];
    similarities.forEach((similarity, i) => {
      const index = units[i + 1]?.start;
      if (similarity < threshold && index !== undefined) {
        cuts.push({ index, reason: 'similarity_drop', similarity, threshold });
      }
    });
    if (cuts.length > 0) return cuts;
  }
  return [];
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
    this.version = `similarity-v1(${embedder.id};${settings.thresholdStart}+${settings.thresholdStep}..${settings.thresholdMax})`;
    this.capability = `topic boundaries from embedding-similarity drops (${embedder.id}); attention half not installed`;
  }

  async boundaries(turns: readonly SegmentableTurn[]): Promise<Boundary[]> {
    const units = exchangeUnits(turns);
    if (units.length < 2) return [];
    const vectors = await this.embedder.embed(units.map((unit) => unit.text));
    return similarityCuts(units, vectors, this.settings);
  }
}
