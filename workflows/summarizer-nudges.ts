import type { EventLog, AppendRecord } from '../services/core/ports/event-log.js';
import type { ScheduledJob } from '../services/core/ports/scheduler.js';
import { Topics } from '../services/core/model/topics.js';
import { StmBufferState } from '../services/stages/summarizer/stm-buffer.js';
import { stmStatePrefix } from '../services/stages/summarizer/summarizer-stage.js';
import { statePrefix } from '../services/stages/state-keys.js';
import { flushStmReason, retryExtractionReason } from '../services/stages/control-events.js';
import { flushEvent } from '../services/core/model/flush-event.js';

export interface SummarizerNudgeOptions {
  readonly intervalMs: number;
  /**
   * With batches that span sessions (`summarizer.flushAtSessionEnd: false`): a buffer quiet this long is
   * extracted. null: buffers are extracted at session ends (the segmenter's idle flush covers the rest).
   */
  readonly idleBufferMs: number | null;
}

/**
 * Nudges the summarizer where its own state says work waits, by appending `flush` events that flush
 * nothing upstream (the segmenter passes them on as empty segments) to the raw log:
 * - `retry-extraction` once a batch deferred for its tenant's LLM budget is due;
 * - `flush-stm` when a buffer of batches that span sessions has been quiet for `idleBufferMs`.
 * The nudges are part of the log, so a replay meets them too; their turn ids name what they are for, so
 * each is appended once.
 */
export function summarizerNudgeJob(log: EventLog, options: SummarizerNudgeOptions): ScheduledJob {
  return {
    name: 'summarizer-nudges',
    intervalMs: options.intervalMs,
    async run({ now }) {
      const state = log.stateOf('summarizer');
      const nudges: AppendRecord<typeof Topics.raw>[] = [];
      for (const key of await state.keys(statePrefix(stmStatePrefix))) {
        const raw = await state.get(key);
        if (raw === undefined) continue;
        const buffer = StmBufferState.parse(JSON.parse(raw));
        const due = buffer.deferred.filter((d) => d.retryAt <= now);
        const deferred = due[0]?.segments[0];
        if (deferred !== undefined) {
          const latest = Math.max(...due.map((d) => d.retryAt));
          const turnId = `${retryExtractionReason}@${latest}`;
          nudges.push(flushEvent(deferred, { turnId, seq: 0, now, reason: retryExtractionReason }));
        }
        const buffered = buffer.segments[0];
        if (
          options.idleBufferMs !== null &&
          buffered !== undefined &&
          now - buffer.lastReceivedAt >= options.idleBufferMs
        ) {
          const turnId = `${flushStmReason}@${buffer.lastReceivedAt}`;
          nudges.push(flushEvent(buffered, { turnId, seq: 0, now, reason: flushStmReason }));
        }
      }
      if (nudges.length > 0) await log.append(Topics.raw, nudges);
    },
  };
}
