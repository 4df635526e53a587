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
