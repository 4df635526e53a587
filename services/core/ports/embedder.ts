export interface Embedder {
  /** Model identity (name + revision); a store built with one embedder refuses vectors of another. */
  readonly id: string;
  readonly dims: number;
  /**
   * Put before a search query (not before the memories) when it is embedded, for models trained with an
   * instruction for short queries against passages (bge: "Represent this sentence for searching relevant
   * passages: "). Undefined: queries are embedded as they are.
   */
  readonly queryPrefix?: string | undefined;
  /** One vector per text, L2-normalised, in input order. Implementations batch internally. */
  embed(texts: readonly string[]): Promise<Float32Array[]>;
}
