import type { EventLog, AppendRecord } from '../../services/core/ports/event-log.js';
import type { Clock } from '../../services/core/ports/clock.js';
import { Topics } from '../../services/core/model/topics.js';
import { flushEvent } from '../../services/core/model/flush-event.js';
import { SensoryBufferState } from '../../services/stages/segmenter/sensory-buffer.js';
import { sensoryStatePrefix } from '../../services/stages/segmenter/segmenter-stage.js';
import { StmBufferState } from '../../services/stages/summarizer/stm-buffer.js';
import { stmStatePrefix } from '../../services/stages/summarizer/summarizer-stage.js';
import { statePrefix } from '../../services/stages/state-keys.js';
import { flushStmReason, retryExtractionReason } from '../../services/stages/control-events.js';

export interface MaintenanceDeps {
  readonly log: EventLog;
  readonly clock: Clock;
}

/**
 * The pipeline's own sleep-time chores, as activities (plain functions over the ports, JSON in and out),
 * like consolidation's. They read a stage's state, which lives where the stage runs (Kafka: the partitions
 * a process owns), so they run beside their stage on its runner, each instance for its own partitions.
 */
export interface MaintenanceActivities {
  /**
   * Flushes the buffers of conversations quiet for `idleMs`. It does not touch the buffers: it appends a
   * `flush` event to the raw log, so the flush is part of the history and a replay of the log cuts exactly
   * the same segments and memories.
   */
  flushIdleConversations(input: { readonly idleMs: number }): Promise<{ readonly flushed: number }>;
  /**
   * Nudges the summarizer where its own state says work waits, by appending `flush` events that flush
   * nothing upstream (the segmenter passes them on as empty segments) to the raw log:
   * - `retry-extraction` once a batch deferred for its tenant's LLM budget is due;
   * - `flush-stm` when a buffer of batches that span sessions has been quiet for `idleBufferMs` (null: off).
   * The nudges are part of the log, so a replay meets them too; their turn ids name what they are for, so
   * each is appended once.
   */
  nudgeSummarizer(input: { readonly idleBufferMs: number | null }): Promise<{ readonly nudged: number }>;
}

export function createMaintenanceActivities(deps: MaintenanceDeps): MaintenanceActivities {
  const { log } = deps;
  return {
    async flushIdleConversations({ idleMs }) {
      const now = deps.clock.now();
      const state = log.stateOf('segmenter');
      const flushes: AppendRecord<typeof Topics.raw>[] = [];
      for (const key of await state.keys(statePrefix(sensoryStatePrefix))) {
        const raw = await state.get(key);
        if (raw === undefined) continue;
        const buffer = SensoryBufferState.parse(JSON.parse(raw));
        if (buffer.turns.length === 0 || now - buffer.lastReceivedAt < idleMs) continue;
        flushes.push(
          flushEvent(buffer, {
            turnId: `flush-after:${buffer.lastTurnId}`,
            seq: (buffer.turns.at(-1)?.seq ?? 0) + 1,
            now,
            reason: 'idle',
          }),
        );
      }
      if (flushes.length > 0) await log.append(Topics.raw, flushes);
      return { flushed: flushes.length };
    },

    async nudgeSummarizer({ idleBufferMs }) {
      const now = deps.clock.now();
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
        if (idleBufferMs !== null && buffered !== undefined && now - buffer.lastReceivedAt >= idleBufferMs) {
          const turnId = `${flushStmReason}@${buffer.lastReceivedAt}`;
          nudges.push(flushEvent(buffered, { turnId, seq: 0, now, reason: flushStmReason }));
        }
      }
      if (nudges.length > 0) await log.append(Topics.raw, nudges);
      return { nudged: nudges.length };
    },
  };
}
