import type { LightmemConfig } from '../../core/config.js';
import type { Embedder } from '../../core/ports/embedder.js';
import type { AttentionModel, Boundary, SegmentableTurn, Segmenter } from '../../core/ports/segmenter.js';
import {
  attentionPeaks,
  combineBoundaries,
  sentenceAttention,
  type CombinationRule,
} from './attention-boundaries.js';
import {
  defaultSimilaritySettings,
  exchangeUnits,
  similarityCuts,
  type ExchangeUnit,
  similarityVersion,
  type SimilaritySettings,
} from './similarity-segmenter.js';

export interface HybridSettings extends SimilaritySettings {
  /** How attention peaks (B1) and similarity drops (B2) combine; the paper's rule is `intersection`. */
  readonly rule: CombinationRule;
  /** A similarity boundary survives `intersection` when a peak lies within ± this many exchanges. */
  readonly toleranceWindow: number;
  /** Tokens masked at each end of the sequence as attention sinks. */
  readonly sinkTokens: number;
}

export const defaultHybridSettings: HybridSettings = {
  ...defaultSimilaritySettings,
  rule: 'intersection',
  toleranceWindow: 3,
  sinkTokens: 3,
};

/** The segmenter's settings from the `segmenter` section of the configuration. */
export function hybridSettingsFrom(s: LightmemConfig['segmenter']): HybridSettings {
  return {
    criterion: s.similarity,
    thresholdStart: s.thresholdStart,
    thresholdStep: s.thresholdStep,
    thresholdMax: s.thresholdMax,
    depthStdFactor: s.depthStdFactor,
    depthFloor: s.depthFloor,
    unitWords: s.unitWords,
    rule: s.rule,
    toleranceWindow: s.toleranceWindow,
    sinkTokens: s.sinkTokens,
  };
}

/**
 * LightMem's topic segmentation (reference §5): attention peaks over the human turns (B1) combined with
 * adaptive-threshold similarity drops between exchanges (B2). Both are computed in exchange units and
 * reported as turn indices.
 */
export class HybridSegmenter implements Segmenter {
  readonly version: string;
  readonly capability: string;

  constructor(
    private readonly attention: AttentionModel,
    private readonly embedder: Embedder,
    private readonly settings: HybridSettings = defaultHybridSettings,
  ) {
    const s = settings;
    this.version = `hybrid-v1(${attention.id};${embedder.id};${s.rule}±${s.toleranceWindow};sink${s.sinkTokens};${similarityVersion(s)})`;
    this.capability = `topic boundaries: attention peaks (${attention.id}) ${s.rule} ${s.criterion} similarity drops (${embedder.id}), ±${s.toleranceWindow}`;
  }

  async boundaries(turns: readonly SegmentableTurn[]): Promise<Boundary[]> {
    const units = exchangeUnits(turns, this.settings.unitWords);
    if (units.length < 2) return [];
    const needsAttention = this.settings.rule !== 'similarity';
    const needsSimilarity = this.settings.rule !== 'attention';
    const [attention, vectors] = await Promise.all([
      needsAttention ? this.attention.attention(units.map((unit) => unit.lead)) : null,
      needsSimilarity ? this.embedder.embed(units.map((unit) => unit.text)) : null,
    ]);
    const peaks =
      attention === null
        ? []
        : attentionPeaks(sentenceAttention(attention.matrix, attention.spans, this.settings.sinkTokens));
    return hybridCuts(units, peaks, vectors, this.settings);
  }
}

/**
 * The hybrid boundaries of one buffer from its signals: the attention peaks (unit indices, from the
 * human turns) and the unit vectors (null when the rule needs no similarity). Pure, so a benchmark can
 * evaluate many settings over signals computed once.
 */
export function hybridCuts(
  units: readonly ExchangeUnit[],
  peaks: readonly number[],
  vectors: readonly Float32Array[] | null,
  settings: HybridSettings,
): Boundary[] {
  if (units.length < 2) return [];
  const similarity =
    vectors === null || settings.rule === 'attention' ? [] : similarityCuts(units, vectors, settings);
  // Peaks are unit indices; similarity boundaries are turn indices: compare in unit space.
  const unitOfTurn = new Map(units.map((unit, u) => [unit.start, u]));
  const inUnits = similarity.map((b) => ({ ...b, index: unitOfTurn.get(b.index) ?? -1 }));
  const combined = combineBoundaries(
    settings.rule === 'similarity' ? [] : peaks,
    inUnits,
    settings.rule,
    settings.toleranceWindow,
    (u) => ({
      index: u,
      reason: 'attention_peak' as const,
      similarity: null,
      threshold: null,
    }),
  );
  return combined
    .map((b) => ({
      ...b,
      index: units[b.index]?.start ?? -1,
      reason: settings.rule === 'intersection' ? ('hybrid' as const) : b.reason,
    }))
    .filter((b) => b.index > 0);
}
