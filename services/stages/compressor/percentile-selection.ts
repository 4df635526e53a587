import type { ScoredWord } from '../../core/ports/token-scorer.js';

/**
 * numpy.percentile with linear interpolation (what LLMLingua-2 uses), q in [0, 100].
 */
export function percentile(sortedAscending: readonly number[], q: number): number {
  const n = sortedAscending.length;
  if (n === 0) return Number.NaN;
  const clamped = Math.min(100, Math.max(0, q));
  const position = (clamped / 100) * (n - 1);
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const low = sortedAscending[lower] ?? 0;
  const high = sortedAscending[upper] ?? low;
  return low + (high - low) * (position - lower);
}

/**
 * LLMLingua-2 word selection for retention rate `rate` (reference §4.3): each word's keep probability is
 * repeated once per LLM token of the word, the threshold is the percentile of that list at
 * 100·(1−rate)+1, and words strictly above it are kept, in order.
 */
export function selectWords(words: readonly ScoredWord[], rate: number): ScoredWord[] {
  if (rate >= 1 || words.length === 0) return [...words];
  const replicated: number[] = [];
  for (const word of words) for (let i = 0; i < Math.max(1, word.tokens); i++) replicated.push(word.keep);
  replicated.sort((a, b) => a - b);
  const threshold = percentile(replicated, 100 * (1 - rate) + 1);
  return words.filter((word) => word.keep > threshold);
}
