import type { ScoredWord, TokenScorer } from '../../core/ports/token-scorer.js';
import { selectWords } from './percentile-selection.js';

export interface CompressionSettings {
  /** Retention ratio r: roughly this fraction of tokens survives (1 = no compression). */
  readonly rate: number;
  /** A compressed text still over this many tokens is compressed again (at `recompressRate`). */
  readonly maxTokens: number;
  readonly recompressRate: number;
  /**
   * A text of at most this many words is kept whole: compressing a short turn saves a few tokens and can
   * leave a bare value ("My parcel number is ZX-41." → "ZX-41.") that no longer says what it is. Default 0.
   */
  readonly minWords?: number | undefined;
}

export interface Compressed {
  readonly text: string;
  readonly originalTokens: number;
  readonly keptTokens: number;
}

function tokensOf(words: readonly ScoredWord[]): number {
  return words.reduce((sum, word) => sum + word.tokens, 0);
}

/**
 * Light1a of LightMem: keep the words above the retention percentile; compress again while the result is
 * over the limit; keep the original when compression leaves nothing. Texts are scored in one batch.
 */
export async function compressTexts(
  texts: readonly string[],
  scorer: TokenScorer,
  settings: CompressionSettings,
): Promise<Compressed[]> {
  if (texts.length === 0) return [];
  const scored = await scorer.score(texts);
  return texts.map((text, index) => {
    const words = scored[index] ?? [];
    const originalTokens = tokensOf(words);
    if (settings.rate >= 1 || words.length <= (settings.minWords ?? 0)) {
      return { text, originalTokens, keptTokens: originalTokens };
    }
    let kept = selectWords(words, settings.rate);
    // Re-compression reuses the first pass's probabilities (a model would give the same ones for the same words).
    for (let round = 0; round < 8 && tokensOf(kept) > settings.maxTokens; round++) {
      const next = selectWords(kept, settings.recompressRate);
      // Equal probabilities leave nothing above the percentile: keep the last round rather than fall back to
      // the (longer) original below.
      if (next.length === 0) break;
      kept = next;
    }
    if (kept.length === 0) return { text, originalTokens, keptTokens: originalTokens };
    return { text: kept.map((w) => w.word).join(' '), originalTokens, keptTokens: tokensOf(kept) };
  });
}
