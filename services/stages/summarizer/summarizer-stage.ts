import type { BatchHandler, LogRecord, OutputRecord, StateWrite } from '../../core/ports/event-log.js';
import type { Extractor } from '../../core/ports/extractor.js';
import type { Clock } from '../../core/ports/clock.js';
import type { MemoryEntry, PipelineVersion, Role, TopicSegment } from '../../core/model/generated.js';
import { Topics } from '../../core/model/topics.js';
import { stableId } from '../../core/model/ids.js';
import { compositeKey } from '../../core/model/keys.js';
import { conversationStateKey } from '../state-keys.js';
import { payloadExcerpt } from '../../core/model/dead-letter.js';
import type { DeadLetter } from '../../core/model/generated.js';
import { StmBufferState } from './stm-buffer.js';

export interface SummarizerStageDeps {
  readonly extractor: Extractor;
  /** STM threshold th in tokens (LightMem: 512): a batch is extracted when the next segment would overflow it. */
  readonly thresholdTokens: number;
  /** Roles whose tokens count toward th. */
  readonly countedRoles: ReadonlySet<Role>;
  /** Embedder id recorded in the pipeline version (null when none is installed). */
  readonly embedderId: string | null;
  readonly clock: Clock;
}

export const stmStatePrefix = 'stm';

export function memoryKey(entry: { tenantId: string; userId: string }): string {
  return compositeKey([entry.tenantId, entry.userId]);
}

/**
 * Light2 of LightMem: topic segments gather in a persisted STM buffer per conversation; when the next one
 * would overflow th tokens, the buffer goes to the extractor as one batch. A session end flushes it.
 */
export function summarizerStage(deps: SummarizerStageDeps): BatchHandler<typeof Topics.segments> {
  const extractorVersion = `${deps.extractor.version}@th${deps.thresholdTokens}`;

  /** The records of one extracted batch: its memories, and a dead letter per problem the extractor reported. */
  async function extract(
    batch: readonly TopicSegment[],
    trigger: LogRecord<typeof Topics.segments>,
  ): Promise<OutputRecord[]> {
    const out: OutputRecord[] = [];
    const [first] = batch;
    if (first === undefined) return out;
    const pipeline: PipelineVersion = {
      scorer: first.scorerVersion,
      segmenter: first.segmenterVersion,
      extractor: extractorVersion,
      promptHash: deps.extractor.promptHash,
      embedder: deps.embedderId,
    };
    const versionParts = [
      pipeline.scorer,
      pipeline.segmenter,
      pipeline.extractor,
      pipeline.promptHash ?? '',
      pipeline.embedder ?? '',
    ];
    const segments = new Map(batch.map((segment) => [segment.segmentId, segment]));
    const now = deps.clock.now();
    const ordinals = new Map<string, number>();
    const result = await deps.extractor.extract(batch);
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
        failedAt: deps.clock.now(),
      };
      out.push({ topic: Topics.deadLetters, key: 'summarizer', value: letter });
    }
    for (const memory of result.memories) {
      const segment = segments.get(memory.topicId) ?? first;
      // An extractor may find several memories of one kind in the same turns (an LLM: several facts per
      // message); each needs its own id. The first keeps the plain kind, so ids stay as they were.
      const sameSources = JSON.stringify([memory.kind, memory.sourceTurnIds]);
      const ordinal = ordinals.get(sameSources) ?? 0;
      ordinals.set(sameSources, ordinal + 1);
      const entry: MemoryEntry = {
        id: stableId('mem', [
          segment.tenantId,
          segment.userId,
          segment.conversationId,
          ordinal === 0 ? memory.kind : `${memory.kind}#${ordinal}`,
          ...versionParts,
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
        ingestedAt: now,
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

  function tokensOf(segment: TopicSegment): number {
    return segment.turns.filter((t) => deps.countedRoles.has(t.role)).reduce((sum, t) => sum + t.tokens, 0);
  }

  return async (records, state) => {
    // First the buffers decide which batches are due (in record order), then the batches are extracted
    // concurrently (an LLM extractor bounds its calls in flight), and their output is kept in that order.
    const due: { batch: TopicSegment[]; trigger: LogRecord<typeof Topics.segments> }[] = [];
    const cache = new Map<string, StmBufferState>();
    for (const record of records) {
      const { value: segment, appendedAt } = record;
      const key = conversationStateKey(stmStatePrefix, segment);
      let buffer = cache.get(key);
      if (buffer === undefined) {
        const raw = await state.get(key);
        buffer =
          raw === undefined
            ? { tokens: 0, lastReceivedAt: appendedAt, segments: [] }
            : StmBufferState.parse(JSON.parse(raw));
      }
      if (segment.turns.length > 0) {
        const tokens = tokensOf(segment);
        if (buffer.segments.length > 0 && buffer.tokens + tokens > deps.thresholdTokens) {
          due.push({ batch: buffer.segments, trigger: record });
          buffer = { tokens: 0, lastReceivedAt: appendedAt, segments: [] };
        }
        buffer.segments.push(segment);
        buffer.tokens += tokens;
        buffer.lastReceivedAt = appendedAt;
      }
      if (segment.endOfSession && buffer.segments.length > 0) {
        due.push({ batch: buffer.segments, trigger: record });
        buffer = { tokens: 0, lastReceivedAt: appendedAt, segments: [] };
      }
      cache.set(key, buffer);
    }
    const out = (await Promise.all(due.map(({ batch, trigger }) => extract(batch, trigger)))).flat();
    const writes: StateWrite[] = [...cache.entries()].map(([key, buffer]) => ({
      key,
      value: buffer.segments.length === 0 ? null : JSON.stringify(buffer),
    }));
    return { records: out, state: writes };
  };
}
