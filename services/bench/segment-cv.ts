import { createHash } from 'node:crypto';
import type { CombinationRule } from '../stages/segmenter/attention-boundaries.js';
import type { HybridSettings } from '../stages/segmenter/hybrid-segmenter.js';
import { scores, type BoundaryCounts, type BoundaryScores } from './segment-bench.js';

/**
 * Cross-validated tuning of the segmenter (`lightmem bench segment --cv K`): the questions are split into K
 * folds by a hash of their id; for each fold the best setting of a grid is chosen on the other K − 1 folds
 * and scored on the held-out one. Everything here is arithmetic over a table of boundary counts (one row
 * per question, one cell per setting), filled once by `segment-cv-grid.ts`.
 */

/** One point of the grid: the hybrid segmenter's settings and the sensory buffer's capacity. */
export interface SegmentSetting extends HybridSettings {
  readonly bufferTokens: number;
}

/** The values tried for each parameter (irrelevant combinations are folded together). */
export interface GridSpec {
  readonly rules: readonly CombinationRule[];
  readonly windows: readonly number[];
  readonly sinkTokens: readonly number[];
  readonly unitWords: readonly number[];
  readonly depthStdFactors: readonly number[];
  readonly depthFloors: readonly number[];
  /** Adaptive τ schedules: [start, step, max]. */
  readonly adaptive: readonly (readonly [number, number, number])[];
  readonly bufferTokens: readonly number[];
}

export const defaultGridSpec: Omit<GridSpec, 'bufferTokens'> = {
  rules: ['intersection', 'union', 'similarity', 'attention'],
  windows: [0, 1, 2, 3, 5],
  sinkTokens: [1, 3, 6],
  // 0 (whole exchanges, up to 512 tokens) costs ~7× the embedding time of 64 words: add it with --unit-words.
  unitWords: [32, 64, 128],
  depthStdFactors: [0, 0.25, 0.5, 0.75, 1, 1.5],
  depthFloors: [0.05, 0.1, 0.15, 0.2, 0.3],
  // LightMem's schedule (tuned on MiniLM), and one on bge-small's scale (unrelated turns sit above 0.5).
  adaptive: [
    [0.2, 0.05, 0.5],
    [0.4, 0.05, 0.95],
  ],
};

/** A short, unique name of a setting: only the parameters its rule and criterion use. */
export function settingLabel(s: SegmentSetting): string {
  const similarity =
    (s.criterion === 'adaptive'
      ? `adaptive${s.thresholdStart}+${s.thresholdStep}..${s.thresholdMax}`
      : `depth${s.depthStdFactor}σ≥${s.depthFloor}`) + ` words${s.unitWords}`;
  const parts: string[] = [];
  switch (s.rule) {
    case 'attention':
      parts.push('attention', `sink${s.sinkTokens}`);
      break;
    case 'similarity':
      parts.push('similarity', similarity);
      break;
    case 'union':
      parts.push('union', similarity, `sink${s.sinkTokens}`);
      break;
    case 'intersection':
      parts.push(`intersection±${s.toleranceWindow}`, similarity, `sink${s.sinkTokens}`);
      break;
  }
  parts.push(`buf${s.bufferTokens}`);
  return parts.join(' ');
}

/**
 * Every combination of the spec's values, `base` (today's configuration) first, each distinct setting
 * once: parameters a rule or criterion ignores keep base's value, so they do not multiply the grid.
 */
export function segmentGrid(base: SegmentSetting, spec: GridSpec): SegmentSetting[] {
  const similarities: Partial<SegmentSetting>[] = [];
  for (const unitWords of spec.unitWords) {
    for (const depthStdFactor of spec.depthStdFactors)
      for (const depthFloor of spec.depthFloors)
        similarities.push({ criterion: 'depth', depthStdFactor, depthFloor, unitWords });
    for (const [thresholdStart, thresholdStep, thresholdMax] of spec.adaptive)
      similarities.push({ criterion: 'adaptive', thresholdStart, thresholdStep, thresholdMax, unitWords });
  }
  const out = new Map<string, SegmentSetting>([[settingLabel(base), base]]);
  const add = (s: SegmentSetting): void => {
    const label = settingLabel(s);
    if (!out.has(label)) out.set(label, s);
  };
  for (const bufferTokens of spec.bufferTokens) {
    for (const rule of spec.rules) {
      const sinks = rule === 'similarity' ? [base.sinkTokens] : spec.sinkTokens;
      const windows = rule === 'intersection' ? spec.windows : [base.toleranceWindow];
      const sims = rule === 'attention' ? [{}] : similarities;
      for (const sinkTokens of sinks)
        for (const toleranceWindow of windows)
          for (const sim of sims) add({ ...base, ...sim, rule, sinkTokens, toleranceWindow, bufferTokens });
    }
  }
  return [...out.values()];
}

/**
 * The fold of a question: a hash of its id, so a question keeps its fold whatever else is in the file.
 * Salted: the development file itself looks cut from LongMemEval by sha256(id) (its 206 ids all have
 * sha256 mod 10 in 0–3), so the plain hash mod 5 would leave a fold empty.
 */
export function foldOf(id: string, folds: number): number {
  return createHash('sha256').update(`segment-cv:${id}`).digest().readUInt32BE(0) % folds;
}

/** One question's boundary counts under every setting of the grid (same order as the grid). */
export interface QuestionCounts {
  readonly id: string;
  readonly counts: readonly BoundaryCounts[];
}

/**
 * What a setting is chosen by, from counts pooled over the questions it is chosen on: F1 or F2 (recall
 * weighed four times precision), of exact boundaries or within ±1 exchange. The default is `f2-exact`: a
 * missed boundary puts two topics in one block the LLM reads as one, an extra one only splits a topic
 * into two blocks of the same prompt; and a boundary one exchange off still puts an exchange in the wrong
 * block, so it does not count as found.
 */
export type SelectionCriterion = 'f1-near' | 'f1-exact' | 'f2-near' | 'f2-exact';
export const selectionCriteria: readonly SelectionCriterion[] = [
  'f1-near',
  'f1-exact',
  'f2-near',
  'f2-exact',
];

/** F-beta of pooled counts, exact or within ±1 exchange (beta 2 weighs recall four times precision). */
export function objective(criterion: SelectionCriterion, c: BoundaryCounts): number {
  const matched = criterion.endsWith('near') ? c.nearby : c.exact;
  const beta2 = criterion.startsWith('f2') ? 4 : 1;
  const denominator = beta2 * c.gold + c.predicted;
  return denominator === 0 ? 0 : ((1 + beta2) * matched) / denominator;
}

const zero = (): BoundaryCounts => ({ predicted: 0, gold: 0, exact: 0, nearby: 0 });

function add(total: BoundaryCounts, c: BoundaryCounts | undefined): void {
  if (c === undefined) return;
  total.predicted += c.predicted;
  total.gold += c.gold;
  total.exact += c.exact;
  total.nearby += c.nearby;
}

/** The counts of setting `index` summed over the given questions. */
export function pooled(rows: readonly QuestionCounts[], index: number): BoundaryCounts {
  const total = zero();
  for (const row of rows) add(total, row.counts[index]);
  return total;
}

/**
 * The best setting on the given questions: the highest criterion on pooled counts; ties go to the earlier
 * setting of the grid (the grid starts with today's configuration, so it wins ties).
 */
export function chooseSetting(
  rows: readonly QuestionCounts[],
  settings: number,
  criterion: SelectionCriterion,
): { index: number; score: number } {
  let best = { index: 0, score: -Infinity };
  for (let index = 0; index < settings; index++) {
    const score = objective(criterion, pooled(rows, index));
    if (score > best.score) best = { index, score };
  }
  return best;
}

export interface FoldResult {
  readonly fold: number;
  readonly questions: number;
  /** Grid index of the setting chosen on the other folds. */
  readonly chosen: number;
  /** Its criterion on the other folds (the in-sample figure of this fold's choice). */
  readonly trainScore: number;
  /** The chosen setting's counts on the held-out fold. */
  readonly heldOut: BoundaryCounts;
  /** The base setting's (grid index 0) counts on the held-out fold, for comparison. */
  readonly baseHeldOut: BoundaryCounts;
}

export interface CrossValidation {
  readonly folds: readonly FoldResult[];
  /** Held-out counts of every fold summed: the figure of the tuning procedure. */
  readonly heldOut: BoundaryCounts;
  /** The base setting over all questions. */
  readonly base: BoundaryCounts;
  /** The setting chosen on all questions, with its (in-sample) counts. */
  readonly allQuestions: { readonly index: number; readonly score: number; readonly counts: BoundaryCounts };
}

/**
 * K-fold cross-validation over a filled table. A fold's setting is chosen only from the rows of the other
 * folds (`chooseSetting` never sees the held-out rows); folds with no question are skipped.
 */
export function crossValidate(
  rows: readonly QuestionCounts[],
  settings: number,
  folds: number,
  criterion: SelectionCriterion,
  assign: (id: string, folds: number) => number = foldOf,
): CrossValidation {
  const foldOfRow = rows.map((row) => assign(row.id, folds));
  const results: FoldResult[] = [];
  const heldOut = zero();
  for (let fold = 0; fold < folds; fold++) {
    const test = rows.filter((_, i) => foldOfRow[i] === fold);
    if (test.length === 0) continue;
    const train = rows.filter((_, i) => foldOfRow[i] !== fold);
    const { index, score } = chooseSetting(train, settings, criterion);
    const counts = pooled(test, index);
    add(heldOut, counts);
    results.push({
      fold,
      questions: test.length,
      chosen: index,
      trainScore: score,
      heldOut: counts,
      baseHeldOut: pooled(test, 0),
    });
  }
  const all = chooseSetting(rows, settings, criterion);
  return {
    folds: results,
    heldOut,
    base: pooled(rows, 0),
    allQuestions: { ...all, counts: pooled(rows, all.index) },
  };
}

/** Exact and ±1-exchange precision / recall / F1 of pooled counts. */
export function boundaryScores(c: BoundaryCounts): {
  exact: BoundaryScores;
  withinOneExchange: BoundaryScores;
} {
  return {
    exact: scores(c.exact, c.predicted, c.gold),
    withinOneExchange: scores(c.nearby, c.predicted, c.gold),
  };
}

/**
 * Which value of each parameter the folds chose, e.g. `unitWords: "128×4, 64×1"` (a parameter the chosen
 * rule or criterion ignores shows the base value).
 */
export function parameterChoices(chosen: readonly SegmentSetting[]): Record<string, string> {
  const keys: (keyof SegmentSetting)[] = [
    'rule',
    'toleranceWindow',
    'sinkTokens',
    'criterion',
    'depthStdFactor',
    'depthFloor',
    'unitWords',
    'bufferTokens',
  ];
  const out: Record<string, string> = {};
  for (const key of keys) {
    const tally = new Map<string, number>();
    for (const s of chosen) tally.set(String(s[key]), (tally.get(String(s[key])) ?? 0) + 1);
    out[key] = [...tally.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([value, n]) => `${value}×${n}`)
      .join(', ');
  }
  return out;
}
