import type { EventLog, AppendRecord } from '../services/core/ports/event-log.js';
import type { ScheduledJob } from '../services/core/ports/scheduler.js';
import { Topics } from '../services/core/model/topics.js';
import { SensoryBufferState } from '../services/stages/segmenter/sensory-buffer.js';
import { sensoryStatePrefix } from '../services/stages/segmenter/segmenter-stage.js';
import { statePrefix } from '../services/stages/state-keys.js';
import { flushEvent } from '../services/core/model/flush-event.js';

/**
 * Flushes the buffers of conversations that have been quiet for `idleMs`. It does not touch the buffers:
 * it appends a `flush` event to the raw log, so the flush is part of the history and a replay of the log
 * cuts exactly the same segments and memories.
 */
export function idleFlushJob(log: EventLog, options: { idleMs: number; intervalMs: number }): ScheduledJob {
  return {
    name: 'idle-flush',
    intervalMs: options.intervalMs,
    async run({ now }) {
      const state = log.stateOf('segmenter');
      const flushes: AppendRecord<typeof Topics.raw>[] = [];
      for (const key of await state.keys(statePrefix(sensoryStatePrefix))) {
        const raw = await state.get(key);
        if (raw === undefined) continue;
        const buffer = SensoryBufferState.parse(JSON.parse(raw));
        if (buffer.turns.length === 0 || now - buffer.lastReceivedAt < options.idleMs) continue;
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
    },
  };
}
