import type { EventLog, AppendRecord } from '../services/core/ports/event-log.js';
import type { ScheduledJob } from '../services/core/ports/scheduler.js';
import { Topics } from '../services/core/model/topics.js';
import { StmBufferState } from '../services/stages/summarizer/stm-buffer.js';
import { stmStatePrefix } from '../services/stages/summarizer/summarizer-stage.js';
import { statePrefix } from '../services/stages/state-keys.js';
import { retryExtractionReason } from '../services/stages/control-events.js';
import { flushEvent } from './flush-event.js';

/**
 * Nudges the conversations whose extraction the summarizer deferred (their tenant was over its LLM
 * budget) once the deferral is due: it appends a `flush` event marked `retry-extraction` to the raw log,
 * which flushes nothing and makes the summarizer try those batches again. The nudge is part of the log, so
 * a replay meets it too; its turn id names the deferral, so each deferral is nudged once.
 */
export function deferredExtractionJob(log: EventLog, options: { intervalMs: number }): ScheduledJob {
  return {
    name: 'deferred-extraction',
    intervalMs: options.intervalMs,
    async run({ now }) {
      const state = log.stateOf('summarizer');
      const nudges: AppendRecord<typeof Topics.raw>[] = [];
      for (const key of await state.keys(statePrefix(stmStatePrefix))) {
        const raw = await state.get(key);
        if (raw === undefined) continue;
        const buffer = StmBufferState.parse(JSON.parse(raw));
        const due = buffer.deferred.filter((d) => d.retryAt <= now);
        const first = due[0]?.segments[0];
        if (first === undefined) continue;
        const latest = Math.max(...due.map((d) => d.retryAt));
        nudges.push(
          flushEvent(first, {
            turnId: `${retryExtractionReason}@${latest}`,
            seq: 0,
            now,
            reason: retryExtractionReason,
          }),
        );
      }
      if (nudges.length > 0) await log.append(Topics.raw, nudges);
    },
  };
}
