import type { ScheduledJob, Scheduler } from '../../core/ports/scheduler.js';
import type { Clock } from '../../core/ports/clock.js';
import type { Logger } from '../../core/ports/logger.js';
import { errorFields } from '../../core/errors.js';

/**
 * Runs registered jobs on timers inside this process. Runs of one job never overlap; a failing run is
 * logged and the job runs again at its next tick. stop() aborts running jobs and waits for them.
 */
export class InProcessScheduler implements Scheduler {
  private readonly jobs = new Map<
    string,
    { job: ScheduledJob; running: Promise<void> | null; timer: NodeJS.Timeout | null }
  >();
  /** A new one at each start: a scheduler stopped (the pipeline given up) may be started again. */
  private controller = new AbortController();
  private started = false;

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  register(job: ScheduledJob): void {
    if (this.jobs.has(job.name)) throw new Error(`job ${job.name} is already registered`);
    this.jobs.set(job.name, { job, running: null, timer: null });
    if (this.started) this.arm(job.name);
  }

  trigger(name: string): Promise<void> {
    const slot = this.jobs.get(name);
    if (slot === undefined) return Promise.reject(new Error(`no job named ${name}`));
    if (slot.running !== null) return slot.running;
    const run = slot.job
      .run({ signal: this.controller.signal, now: this.clock.now() })
      .catch((error: unknown) =>
        this.logger.error('scheduled job failed', { job: name, ...errorFields(error) }),
      )
      .finally(() => {
        slot.running = null;
      });
    slot.running = run;
    return run;
  }

  start(): void {
    if (this.started) return;
    if (this.controller.signal.aborted) this.controller = new AbortController();
    this.started = true;
    for (const name of this.jobs.keys()) this.arm(name);
  }

  async stop(): Promise<void> {
    this.started = false;
    this.controller.abort();
    const running: Promise<void>[] = [];
    for (const slot of this.jobs.values()) {
      if (slot.timer !== null) clearTimeout(slot.timer);
      if (slot.running !== null) running.push(slot.running);
    }
    await Promise.all(running);
  }

  private arm(name: string): void {
    const slot = this.jobs.get(name);
    if (slot === undefined || !this.started) return;
    slot.timer = setTimeout(() => {
      void this.trigger(name).then(() => this.arm(name));
    }, slot.job.intervalMs);
    slot.timer.unref();
  }
}
