import { setTimeout as sleep } from 'node:timers/promises';
import { isRetryable } from './errors.js';

/**
 * Exponential back-off: `baseMs` doubled per attempt after the first (attempt 1 waits `baseMs`), at most
 * `maxMs`. With `jitter` (a fraction, as kafkajs' randomizationFactor) the delay is spread by ±jitter, so
 * processes that failed on the same contention do not retry in step and collide again.
 */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  jitter = 0,
  random: () => number = Math.random,
): number {
  const delay = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 16));
  return jitter <= 0 ? delay : Math.round(delay * (1 - jitter + 2 * jitter * random()));
}

export interface RetryOptions {
  /** Tries in all (1 = no retry). */
  readonly attempts: number;
  readonly baseMs: number;
  readonly maxMs: number;
  readonly signal?: AbortSignal | undefined;
  readonly onRetry?: ((attempt: number, delayMs: number, error: unknown) => void) | undefined;
}

/**
 * Runs `work`, trying again after a jittered back-off while it fails with a retryable error, up to
 * `attempts` tries; the last error (or a non-retryable one) is thrown as it is, cause and all.
 */
export async function retrying<T>(work: () => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= options.attempts || !isRetryable(error) || options.signal?.aborted === true) throw error;
      const delayMs = backoffMs(attempt, options.baseMs, options.maxMs, 0.2);
      options.onRetry?.(attempt, delayMs, error);
      await sleep(delayMs, undefined, options.signal === undefined ? {} : { signal: options.signal });
    }
  }
}
