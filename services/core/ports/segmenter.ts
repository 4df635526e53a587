import type { BoundaryReason, Role } from '../model/generated.js';

export interface SegmentableTurn {
  readonly role: Role;
  readonly text: string;
}

export interface Boundary {
  /** A new segment starts at this turn index (1..n-1). */
  readonly index: number;
  readonly reason: BoundaryReason;
  readonly similarity: number | null;
  readonly threshold: number | null;
}

export interface Segmenter {
  readonly version: string;
  /** What this segmenter can detect, for logs and `lightmem stats` (e.g. "session boundaries only"). */
  readonly capability: string;
  /** Topic boundaries inside a buffer of consecutive turns, in increasing index order. */
  boundaries(turns: readonly SegmentableTurn[]): Promise<Boundary[]>;
}

/** Token-level attention of an encoder over a sequence of sentences (layers and heads averaged). */
export interface SentenceAttention {
  /** Square matrix over the token positions of the whole sequence (special tokens included). */
  readonly matrix: readonly (readonly number[])[];
  /** Token positions of each input sentence, in order. */
  readonly spans: readonly { readonly start: number; readonly end: number }[];
}

/** An encoder whose graph outputs attention weights (the attention half of topic segmentation). */
export interface AttentionModel {
  readonly id: string;
  /** One sequence of all sentences (as the model's max length allows); sentences cut off get no span. */
  attention(sentences: readonly string[]): Promise<SentenceAttention>;
}
