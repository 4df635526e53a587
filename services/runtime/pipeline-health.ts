import { z } from 'zod';

/** What health answers say about the pipeline. */
export interface PipelineHealth {
  /** Whether the pipeline runs (here or in another process) with every stage alive. */
  readonly ready: boolean;
  /** Where it runs: `this process`, `process <pid>`, or why nowhere. */
  readonly pipeline: string;
  readonly stages?: Readonly<Record<string, StageStatus>>;
  /** Why it is not ready (empty when ready). */
  readonly reasons: readonly string[];
}

export const StageStatusSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('running') }),
  /** Failed with a retryable error and waits to run again (an outage longer than the log's own retries). */
  z.object({ state: z.literal('restarting'), attempt: z.number(), error: z.string() }),
  /** Failed for good: the pipeline stops. */
  z.object({ state: z.literal('failed'), error: z.string() }),
]);

/** What a supervised stage is doing, as health answers report it. */
export type StageStatus = z.infer<typeof StageStatusSchema>;

const PipelineStatusSchema = z.object({ stages: z.record(z.string(), StageStatusSchema) });

/** The status an owner publishes with its heartbeat, so every process sharing a data dir can report it. */
export type PipelineStatus = z.infer<typeof PipelineStatusSchema>;

export const PipelineStatus = {
  encode(status: PipelineStatus): string {
    return JSON.stringify(status);
  },
  /** A status written by another (maybe older) process; unreadable reads as "no stage reported yet". */
  decode(text: string): PipelineStatus {
    try {
      const parsed = PipelineStatusSchema.safeParse(JSON.parse(text));
      return parsed.success ? parsed.data : { stages: {} };
    } catch {
      return { stages: {} };
    }
  },
};
