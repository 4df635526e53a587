export interface Embedder {
  /** Model identity (name + revision); a store built with one embedder refuses vectors of another. */
  readonly id: string;
  readonly dims: number;
  /** One vector per text, L2-normalised, in input order. Implementations batch internally. */
  embed(texts: readonly string[]): Promise<Float32Array[]>;
}
