import type { ExtractionResult } from '../../core/ports/extractor.js';
import type { DeadLetter, MemoryEntry, PipelineVersion, TopicSegment } from '../../core/model/generated.js';
import type { LogRecord, OutputRecord } from '../../core/ports/event-log.js';
import { Topics } from '../../core/model/topics.js';
import { stableId } from '../../core/model/ids.js';
import { compositeKey } from '../../core/model/keys.js';
import { payloadExcerpt } from '../../core/model/dead-letter.js';

export function memoryKey(entry: { tenantId: string; userId: string }): string {
  return compositeKey([entry.tenantId, entry.userId]);
}

export interface EntryContext {
  /** The extractor's version with the STM threshold (`…@th512`). */
  readonly extractorVersion: string;
  readonly promptHash: string | null;
  readonly embedderId: string | null;
  /** The STM threshold, added to the version of memories an extractive fallback made. */
  readonly thresholdTokens: number;
  readonly now: number;
}

/**
 * The output records of one extracted batch: a memory entry per extracted memory, with a deterministic id
 * (scope, kind, pipeline version, source turns: the same turns through the same pipeline give the same
 * ids, a prompt or model change gives new ones), and a dead letter per problem the extractor reported.
 */
export function batchOutput(
  batch: readonly TopicSegment[],
  result: ExtractionResult,
  trigger: LogRecord<typeof Topics.segments>,
  context: EntryContext,
): OutputRecord[] {
  const out: OutputRecord[] = [];
  const [first] = batch;
  if (first === undefined) return out;
  for (const problem of result.problems) {
    const letter: DeadLetter = {
      stage: 'summarizer',
      sourceTopic: trigger.topic,
      sourceOffset: trigger.offset,
      sourceLine: null,
      key: trigger.key,
      errorCode: 'invalid_input',
      field: 'llm.answer',
      reason: `${problem.reason} (batch of ${batch.length} segments, ${batch.map((s) => s.segmentId).join(', ')})`,
      attempt: 1,
      payload: payloadExcerpt(problem.payload),
      failedAt: context.now,
    };
    out.push({ topic: Topics.deadLetters, key: 'summarizer', value: letter });
  }
  const segments = new Map(batch.map((segment) => [segment.segmentId, segment]));
  const ordinals = new Map<string, number>();
  for (const memory of result.memories) {
    const segment = segments.get(memory.topicId) ?? first;
    const pipeline: PipelineVersion = {
      scorer: first.scorerVersion,
      segmenter: first.segmenterVersion,
      extractor:
        memory.madeBy === undefined
          ? context.extractorVersion
          : `${memory.madeBy.version}@th${context.thresholdTokens}`,
      promptHash: memory.madeBy === undefined ? context.promptHash : memory.madeBy.promptHash,
      embedder: context.embedderId,
    };
    // An extractor may find several memories of one kind in the same turns (an LLM: several facts per
    // message); each needs its own id. The first keeps the plain kind, so ids stay as they were.
    const sameSources = JSON.stringify([memory.kind, pipeline.extractor, memory.sourceTurnIds]);
    const ordinal = ordinals.get(sameSources) ?? 0;
    ordinals.set(sameSources, ordinal + 1);
    const entry: MemoryEntry = {
      id: stableId('mem', [
        segment.tenantId,
        segment.userId,
        segment.conversationId,
        ordinal === 0 ? memory.kind : `${memory.kind}#${ordinal}`,
        pipeline.scorer,
        pipeline.segmenter,
        pipeline.extractor,
        pipeline.promptHash ?? '',
        pipeline.embedder ?? '',
        ...memory.sourceTurnIds,
      ]),
      tenantId: segment.tenantId,
      userId: segment.userId,
      agentId: segment.agentId,
      conversationId: segment.conversationId,
      sessionId: segment.sessionId,
      text: memory.text,
      kind: memory.kind,
      topicId: memory.topicId,
      speaker: memory.speaker,
      occurredAt: memory.occurredAt,
      zoneOffset: memory.zoneOffset,
      ingestedAt: context.now,
      validFrom: memory.occurredAt,
      validTo: null,
      supersededBy: null,
      sourceTurnIds: [...memory.sourceTurnIds],
      pipeline,
      sourceText: memory.sourceText ?? null,
    };
    out.push({ topic: Topics.memories, key: memoryKey(entry), value: entry, dedupKey: entry.id });
  }
  return out;
}
