export interface JobContext {
  readonly signal: AbortSignal;
  readonly now: number;
}

export interface ScheduledJob {
  readonly name: string;
  /** Run every intervalMs (after the previous run finished). */
  readonly intervalMs: number;
  run(context: JobContext): Promise<void>;
}

export interface Scheduler {
  register(job: ScheduledJob): void;
  /** Run a registered job now (and wait for it); runs never overlap. */
  trigger(name: string): Promise<void>;
  start(): void;
  stop(): Promise<void>;
}
