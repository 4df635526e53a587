import type { EventLog } from '../services/core/ports/event-log.js';
import type { ScheduledJob } from '../services/core/ports/scheduler.js';
import { createMaintenanceActivities } from './maintenance/activities.js';

export interface SummarizerNudgeOptions {
  readonly intervalMs: number;
  /**
   * With batches that span sessions (`summarizer.flushAtSessionEnd: false`): a buffer quiet this long is
   * extracted. null: buffers are extracted at session ends (the segmenter's idle flush covers the rest).
   */
  readonly idleBufferMs: number | null;
}

/** The summarizer's nudges on the in-process runner: the `nudgeSummarizer` activity every `intervalMs`. */
export function summarizerNudgeJob(log: EventLog, options: SummarizerNudgeOptions): ScheduledJob {
  return {
    name: 'summarizer-nudges',
    intervalMs: options.intervalMs,
    async run({ now }) {
      await createMaintenanceActivities({ log, clock: { now: () => now } }).nudgeSummarizer({
        idleBufferMs: options.idleBufferMs,
      });
    },
  };
}
