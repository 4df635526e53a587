/** A word of the input with the probability that it should be kept. */
export interface ScoredWord {
  readonly word: string;
  /** Keep probability in [0, 1]. */
  readonly keep: number;
  /** How many LLM tokens the word costs (for the percentile, LLMLingua-2 style). */
  readonly tokens: number;
}

export interface TokenScorer {
  readonly version: string;
  /** Scores each text's words; the words, joined by single spaces, reproduce the text's content. */
  score(texts: readonly string[]): Promise<ScoredWord[][]>;
}
