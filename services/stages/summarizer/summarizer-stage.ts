import type { BatchHandler, LogRecord, OutputRecord, StateWrite } from '../../core/ports/event-log.js';
import type { ExtractionResult, Extractor } from '../../core/ports/extractor.js';
import type { Clock } from '../../core/ports/clock.js';
import type { Role, TopicSegment } from '../../core/model/generated.js';
import { Topics } from '../../core/model/topics.js';
import { BudgetExceededError } from '../../core/errors.js';
import { conversationStateKey } from '../state-keys.js';
import { StmBufferState } from './stm-buffer.js';
import { flushStmReason } from '../control-events.js';
import { batchOutput } from './memory-entries.js';

export { memoryKey } from './memory-entries.js';

export interface SummarizerStageDeps {
  readonly extractor: Extractor;
  /** STM threshold th in tokens (LightMem: 512): a batch is extracted when the next segment would overflow it. */
  readonly thresholdTokens: number;
  /** Roles whose tokens count toward th. */
  readonly countedRoles: ReadonlySet<Role>;
  /** Embedder id recorded in the pipeline version (null when none is installed). */
  readonly embedderId: string | null;
  readonly clock: Clock;
  /**
   * A session end extracts the buffer (default). false: batches span sessions; a `flush` (idle, end of a
   * file) or a `flush-stm` nudge extracts what is left.
   */
  readonly flushAtSessionEnd?: boolean | undefined;
}

export const stmStatePrefix = 'stm';

/** A batch due for extraction, the conversation buffer it belongs to, and the record that made it due. */
interface DueBatch {
  readonly key: string;
  readonly batch: readonly TopicSegment[];
  readonly trigger: LogRecord<typeof Topics.segments>;
}

type Extracted =
  | { readonly due: DueBatch; readonly result: ExtractionResult }
  | { readonly due: DueBatch; readonly retryAt: number };

/**
 * Light2 of LightMem: topic segments gather in a persisted STM buffer per conversation; when the next one
 * would overflow th tokens, the buffer goes to the extractor as one batch. A session end flushes it.
 *
 * The buffers first decide which batches are due (in record order); then the batches are extracted
 * concurrently (an LLM extractor bounds its calls in flight) and their output kept in that order. A batch
 * whose tenant is over its LLM budget is not dropped and does not hold up other tenants: it stays in its
 * conversation's state (`deferred`) and is tried again with that conversation's next record (a nudge of
 * the summarizer-nudges job, once the budget has room).
 */
export function summarizerStage(deps: SummarizerStageDeps): BatchHandler<typeof Topics.segments> {
  const extractorVersion = `${deps.extractor.version}@th${deps.thresholdTokens}`;

  function tokensOf(segment: TopicSegment): number {
    return segment.turns.filter((t) => deps.countedRoles.has(t.role)).reduce((sum, t) => sum + t.tokens, 0);
  }

  async function extract(due: DueBatch): Promise<Extracted> {
    try {
      const traceContext = due.trigger.traceContext;
      return { due, result: await deps.extractor.extract(due.batch, { traceContext }) };
    } catch (error) {
      if (error instanceof BudgetExceededError) return { due, retryAt: error.retryAt };
      throw error;
    }
  }

  return async (records, state) => {
    const due: DueBatch[] = [];
    const cache = new Map<string, StmBufferState>();
    const empty = (at: number): StmBufferState => ({
      tokens: 0,
      lastReceivedAt: at,
      segments: [],
      deferred: [],
    });
    for (const record of records) {
      const { value: segment, appendedAt } = record;
      const key = conversationStateKey(stmStatePrefix, segment);
      let buffer = cache.get(key);
      if (buffer === undefined) {
        const raw = await state.get(key);
        buffer = raw === undefined ? empty(appendedAt) : StmBufferState.parse(JSON.parse(raw));
      }
      // Batches deferred for the tenant's budget are tried again first, with any record of their conversation.
      for (const deferred of buffer.deferred) due.push({ key, batch: deferred.segments, trigger: record });
      buffer.deferred = [];
      if (segment.turns.length > 0) {
        const tokens = tokensOf(segment);
        if (buffer.segments.length > 0 && buffer.tokens + tokens > deps.thresholdTokens) {
          due.push({ key, batch: buffer.segments, trigger: record });
          buffer = { ...empty(appendedAt), deferred: buffer.deferred };
        }
        buffer.segments.push(segment);
        buffer.tokens += tokens;
        buffer.lastReceivedAt = appendedAt;
      }
      const flushed =
        segment.boundary.note === flushStmReason ||
        (segment.endOfSession && (deps.flushAtSessionEnd !== false || segment.boundary.reason === 'flush'));
      if (flushed && buffer.segments.length > 0) {
        due.push({ key, batch: buffer.segments, trigger: record });
        buffer = { ...empty(appendedAt), deferred: buffer.deferred };
      }
      cache.set(key, buffer);
    }

    const now = deps.clock.now();
    const context = {
      extractorVersion,
      promptHash: deps.extractor.promptHash,
      embedderId: deps.embedderId,
      thresholdTokens: deps.thresholdTokens,
      now,
    };
    const out: OutputRecord[] = [];
    for (const extracted of await Promise.all(due.map(extract))) {
      const { key, batch, trigger } = extracted.due;
      if ('retryAt' in extracted) {
        cache.get(key)?.deferred.push({ segments: [...batch], retryAt: extracted.retryAt });
        continue;
      }
      out.push(...batchOutput(batch, extracted.result, trigger, context));
    }
    const writes: StateWrite[] = [...cache.entries()].map(([key, buffer]) => ({
      key,
      value: buffer.segments.length === 0 && buffer.deferred.length === 0 ? null : JSON.stringify(buffer),
    }));
    return { records: out, state: writes };
  };
}
