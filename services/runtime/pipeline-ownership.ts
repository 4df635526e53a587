import type { Clock } from '../core/ports/clock.js';
import type { Logger } from '../core/ports/logger.js';
import { errorMessage, errorFields } from '../core/errors.js';
import type { OwnerLock } from '../adapters/sqlite/owner-lock.js';
import type { StageName, StageStatus } from './pipeline.js';
import { PipelineStatus, type PipelineHealth } from './pipeline-health.js';

/** Runs the stages until the signal aborts (resolves) or a stage fails for good (rejects). */
export interface PipelineRunner {
  run(signal: AbortSignal, onStatus: (stage: StageName, status: StageStatus) => void): Promise<void>;
}

export interface OwnershipOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often the owner renews its lock (and publishes its status). */
  readonly heartbeatMs: number;
  /** How often a process that does not run the pipeline checks whether its owner is gone. */
  readonly takeoverCheckMs: number;
  /** After the pipeline failed here, how long this process waits before it may take it again. */
  readonly failureCooldownMs: number;
  /** Called when this process starts running the pipeline, and when it stops (the scheduled jobs). */
  readonly onOwned?: () => void;
  readonly onReleased?: () => Promise<void>;
}

/**
 * Who runs the embedded pipeline of a data dir, decided by the owner lock. Every process that serves or
 * ingests takes part: the owner runs the stages and renews the lock with its status; the others check
 * every `takeoverCheckMs` and take over as soon as the owner is dead (or hung past the lock's stale
 * time), whether or not any client is waiting. A pipeline that fails for good here is given up (the lock
 * released, so another process can take it) and reported, never left holding the lock while stopped.
 */
export class PipelineOwnership {
  private running: { controller: AbortController; done: Promise<void> } | null = null;
  private readonly stages = new Map<StageName, StageStatus>();
  private failure: { error: string; at: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastBeat = 0;

  constructor(
    private readonly lock: OwnerLock,
    private readonly runner: PipelineRunner,
    private readonly options: OwnershipOptions,
  ) {}

  get isOwner(): boolean {
    return this.running !== null;
  }

  get isStarted(): boolean {
    return this.timer !== null;
  }

  /** When the pipeline last failed in this process (after `since`), and why. */
  failedSince(since: number): string | null {
    return this.failure !== null && this.failure.at >= since ? this.failure.error : null;
  }

  /**
   * Takes part from now on: runs the pipeline if nobody does, else watches its owner. Returns whether
   * this process runs it now.
   */
  start(): boolean {
    if (this.timer === null) {
      this.timer = setInterval(() => this.tick(), this.options.takeoverCheckMs);
      this.timer.unref();
    }
    if (this.running === null) this.tryTakeOver();
    return this.running !== null;
  }

  /** Stops the stages (if this process runs them) and releases the lock; no more takeovers. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.stopRunning();
  }

  /** The truth about the pipeline as this process sees it, for health answers. */
  health(): PipelineHealth {
    const now = this.options.clock.now();
    if (this.running !== null) return healthOf('this process', this.status());
    let holder;
    try {
      holder = this.lock.holder(now);
    } catch (error) {
      return notReady('unknown', [`cannot read the pipeline lock: ${errorMessage(error)}`]);
    }
    if (holder !== null && holder.alive && holder.fresh) {
      return healthOf(`process ${holder.pid}`, PipelineStatus.decode(holder.status));
    }
    const reasons: string[] = [];
    if (this.failure !== null) {
      const ago = Math.round((now - this.failure.at) / 1000);
      reasons.push(`the pipeline failed in this process ${ago} s ago: ${this.failure.error}`);
    }
    const cooling = this.failure !== null && now - this.failure.at < this.options.failureCooldownMs;
    const takeover =
      this.timer === null
        ? ''
        : cooling
          ? '; this process tries again when its cool-down ends'
          : '; this process is taking it over';
    if (holder === null) return notReady('nobody', [...reasons, `no process runs the pipeline${takeover}`]);
    if (!holder.alive) {
      return notReady(`process ${holder.pid} (gone)`, [
        ...reasons,
        `the pipeline's process ${holder.pid} is gone${takeover}`,
      ]);
    }
    const silent = Math.round((now - holder.heartbeatAt) / 1000);
    return notReady(`process ${holder.pid} (not responding)`, [
      ...reasons,
      `process ${holder.pid} runs the pipeline but has not renewed its lock for ${silent} s${takeover}`,
    ]);
  }

  private status(): PipelineStatus {
    return { stages: Object.fromEntries(this.stages) };
  }

  private tick(): void {
    const now = this.options.clock.now();
    if (this.running !== null) {
      if (now - this.lastBeat >= this.options.heartbeatMs) this.beat(now);
      return;
    }
    if (this.failure !== null && now - this.failure.at < this.options.failureCooldownMs) return;
    this.tryTakeOver();
  }

  private tryTakeOver(): void {
    const now = this.options.clock.now();
    let acquired: boolean;
    try {
      acquired = this.lock.tryAcquire(now, PipelineStatus.encode({ stages: {} }));
    } catch (error) {
      // Contention on the lock itself: the next check tries again.
      this.options.logger.debug('pipeline lock busy', errorFields(error));
      return;
    }
    if (!acquired) return;
    this.lastBeat = now;
    this.stages.clear();
    const controller = new AbortController();
    const done = this.runner
      .run(controller.signal, (stage, status) => this.stages.set(stage, status))
      .catch((error: unknown) => this.failed(controller, error));
    this.running = { controller, done };
    this.options.logger.info('running the pipeline in this process');
    this.options.onOwned?.();
  }

  private beat(now: number): void {
    this.lastBeat = now;
    let kept: boolean;
    try {
      kept = this.lock.heartbeat(now, PipelineStatus.encode(this.status()));
    } catch (error) {
      // Another process holds the write lock right now; renewing again within the stale time is enough.
      this.options.logger.warn('renewing the pipeline lock failed; trying again', {
        ...errorFields(error),
      });
      return;
    }
    if (kept) return;
    this.options.logger.error('pipeline ownership lost to another process; stopping the stages here');
    void this.stopRunning(false);
  }

  private async failed(controller: AbortController, error: unknown): Promise<void> {
    if (this.running?.controller !== controller) return;
    this.running = null;
    this.failure = { error: errorMessage(error), at: this.options.clock.now() };
    this.options.logger.error('pipeline stopped; giving it up so that a process can take it over', {
      ...errorFields(error),
      retryInMs: this.options.failureCooldownMs,
    });
    this.releaseLock();
    await this.options.onReleased?.();
  }

  private async stopRunning(release = true): Promise<void> {
    const running = this.running;
    if (running === null) return;
    this.running = null;
    running.controller.abort();
    await running.done;
    if (release) this.releaseLock();
    await this.options.onReleased?.();
  }

  private releaseLock(): void {
    try {
      this.lock.release();
    } catch (error) {
      // The lock goes stale on its own; a live process takes it over then.
      this.options.logger.warn('releasing the pipeline lock failed', errorFields(error));
    }
  }
}

/** Health of a running pipeline from its stages' status: ready unless a stage failed for good. */
function healthOf(where: string, status: PipelineStatus): PipelineHealth {
  const reasons = Object.entries(status.stages).flatMap(([name, stage]) =>
    stage.state === 'failed' ? [`stage ${name} failed: ${stage.error}`] : [],
  );
  return { ready: reasons.length === 0, pipeline: where, stages: status.stages, reasons };
}

function notReady(where: string, reasons: readonly string[]): PipelineHealth {
  return { ready: false, pipeline: where, reasons };
}
