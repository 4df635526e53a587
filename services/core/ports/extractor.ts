import type { MemoryKind, TopicSegment } from '../model/generated.js';

export interface ExtractedMemory {
  readonly text: string;
  readonly kind: MemoryKind;
  readonly topicId: string;
  readonly speaker: string;
  /** The turns this memory was taken from (never empty). */
  readonly sourceTurnIds: readonly string[];
  readonly occurredAt: number;
  readonly zoneOffset: string;
  /** The uncompressed text of the source turns, when it differs from `text` (search indexes it). */
  readonly sourceText?: string | null | undefined;
  /**
   * What made this memory when it is not the extractor itself (an LLM extractor's extractive fallback):
   * its version and prompt hash go into the memory's pipeline version and id.
   */
  readonly madeBy?: { readonly version: string; readonly promptHash: string | null } | undefined;
}

/** Something of a batch that could not become memories (an LLM answer that stayed unusable): dead-lettered. */
export interface ExtractionProblem {
  readonly reason: string;
  /** What was wrong, as received (an excerpt of the answer); no secrets. */
  readonly payload: string;
}

export interface ExtractionResult {
  readonly memories: readonly ExtractedMemory[];
  readonly problems: readonly ExtractionProblem[];
}

/** What an extraction is part of. */
export interface ExtractOptions {
  /** The trace of the stage batch that asks (a W3C traceparent): its LLM calls are spans of it. */
  readonly traceContext?: string | undefined;
}

export interface Extractor {
  /** Names the method and everything that changes its output (for an LLM: the model); in the pipeline version. */
  readonly version: string;
  /** Hash of the prompt, for LLM extractors; null for extractive ones. */
  readonly promptHash: string | null;
  /**
   * Memories from one STM batch (several topic segments of one conversation). Throws a retryable error
   * when the batch should be tried again later (an endpoint down); never drops turns silently.
   */
  extract(batch: readonly TopicSegment[], options?: ExtractOptions): Promise<ExtractionResult>;
}
