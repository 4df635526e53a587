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
}

export interface Extractor {
  readonly version: string;
  /** Hash of the prompt, for LLM extractors; null for extractive ones. */
  readonly promptHash: string | null;
  /** Memories from one STM batch (several topic segments of one conversation). */
  extract(batch: readonly TopicSegment[]): Promise<ExtractedMemory[]>;
}
