import type { EventLog } from '../services/core/ports/event-log.js';
import type { ScheduledJob } from '../services/core/ports/scheduler.js';
import { createMaintenanceActivities } from './maintenance/activities.js';

/**
 * The idle flush on the in-process runner: every `intervalMs`, the `flushIdleConversations` activity
 * (maintenance/activities.ts) at the run's time.
 */
export function idleFlushJob(log: EventLog, options: { idleMs: number; intervalMs: number }): ScheduledJob {
  return {
    name: 'idle-flush',
    intervalMs: options.intervalMs,
    async run({ now }) {
      await createMaintenanceActivities({ log, clock: { now: () => now } }).flushIdleConversations({
        idleMs: options.idleMs,
      });
    },
  };
}
