import { setTimeout as sleep } from 'node:timers/promises';
import type {
  BatchHandler,
  LogRecord,
  OutputRecord,
  StageOutput,
  StateReader,
  StateWrite,
} from '../core/ports/event-log.js';
import type { Logger } from '../core/ports/logger.js';
import type { Clock } from '../core/ports/clock.js';
import type { DeadLetter } from '../core/model/generated.js';
import { Topics, type TopicName } from '../core/model/topics.js';
import { LightmemError, errorMessage, isRetryable } from '../core/errors.js';
import { backoffMs } from '../core/backoff.js';
import { payloadExcerpt } from '../core/model/dead-letter.js';

/** The dead-letter record of an input a stage could not process: the original plus why. */
export function deadLetterFor(
  group: string,
  record: LogRecord,
  error: unknown,
  attempt: number,
  now: number,
): OutputRecord {
  const value: DeadLetter = {
    stage: group,
    sourceTopic: record.topic,
    sourceOffset: record.offset,
    sourceLine: null,
    key: record.key,
    errorCode: error instanceof LightmemError ? error.code : 'internal',
    field: error instanceof LightmemError ? (error.field ?? null) : null,
    reason: errorMessage(error),
    attempt,
    payload: payloadExcerpt(JSON.stringify(record.value)),
    failedAt: now,
  };
  return { topic: Topics.deadLetters, key: group, value };
}

/** A state view with a batch's not yet committed writes laid over the committed state. */
export function overlayState(base: StateReader, pending: ReadonlyMap<string, string | null>): StateReader {
  return {
    get: async (key) => {
      if (pending.has(key)) return pending.get(key) ?? undefined;
      return base.get(key);
    },
    keys: async (prefix) => {
      const keys = new Set(await base.keys(prefix));
      for (const [key, value] of pending) {
        if (!key.startsWith(prefix)) continue;
        if (value === null) keys.delete(key);
        else keys.add(key);
      }
      return [...keys].sort();
    },
  };
}

export interface BatchRunOptions {
  readonly group: string;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** Throws (invalid_input) when an output record does not match its schema: that input is dead-lettered. */
  readonly check: (output: StageOutput) => void;
  /** Called while waiting in a retry backoff (Kafka: heartbeat so the group keeps this member). */
  readonly whileWaiting?: () => Promise<void>;
}

/**
 * Runs a stage's handler over a batch to one combined output: a retryable failure is retried with
 * exponential backoff; a non-retryable one re-runs the batch record by record (each seeing the state
 * written by the records before it) and dead-letters exactly the failing records. Returns null when the
 * signal aborts first. Used by adapters that commit a whole batch at once (Kafka transactions).
 */
export async function runBatch<T extends TopicName>(
  records: readonly LogRecord<T>[],
  handler: BatchHandler<T>,
  state: StateReader,
  options: BatchRunOptions,
): Promise<StageOutput | null> {
  const whole = await attempt(records, handler, state, options);
  if (whole === null || whole.ok) return whole === null ? null : whole.output;
  const [only] = records;
  if (records.length === 1 && only !== undefined)
    return deadLettered(only, whole.error, whole.attempts, options);
  const pending = new Map<string, string | null>();
  const view = overlayState(state, pending);
  const outputs: OutputRecord[] = [];
  const writes: StateWrite[] = [];
  for (const record of records) {
    const single = await attempt([record], handler, view, options);
    if (single === null) return null;
    const output = single.ok ? single.output : deadLettered(record, single.error, single.attempts, options);
    outputs.push(...output.records);
    writes.push(...output.state);
    for (const write of output.state) pending.set(write.key, write.value);
  }
  return { records: outputs, state: writes };
}

type Attempt = { ok: true; output: StageOutput } | { ok: false; error: unknown; attempts: number };

async function attempt<T extends TopicName>(
  records: readonly LogRecord<T>[],
  handler: BatchHandler<T>,
  state: StateReader,
  options: BatchRunOptions,
): Promise<Attempt | null> {
  for (let attempts = 1; ; attempts++) {
    if (options.signal.aborted) return null;
    try {
      const output = await handler(records, state);
      options.check(output);
      return { ok: true, output };
    } catch (error) {
      if (options.signal.aborted) return null;
      if (!isRetryable(error)) return { ok: false, error, attempts };
      const delay = backoffMs(attempts, options.retryBaseMs, options.retryMaxMs);
      options.logger.warn('stage failed, retrying', {
        group: options.group,
        topic: records[0]?.topic,
        offset: records[0]?.offset,
        attempt: attempts,
        delayMs: delay,
        error: errorMessage(error),
      });
      await waitWithHeartbeat(delay, options);
    }
  }
}

/** Sleeps up to `ms` (less when the signal aborts), calling `whileWaiting` every few seconds. */
export async function waitWithHeartbeat(
  ms: number,
  options: Pick<BatchRunOptions, 'signal' | 'whileWaiting'>,
): Promise<void> {
  const until = Date.now() + ms;
  while (!options.signal.aborted && Date.now() < until) {
    await sleep(Math.min(2_000, until - Date.now()), undefined, { signal: options.signal }).catch(
      () => undefined,
    );
    if (options.whileWaiting !== undefined && !options.signal.aborted)
      await options.whileWaiting().catch(() => undefined);
  }
}

function deadLettered(
  record: LogRecord,
  error: unknown,
  attempts: number,
  options: BatchRunOptions,
): StageOutput {
  options.logger.error('record dead-lettered', {
    group: options.group,
    topic: record.topic,
    offset: record.offset,
    error: errorMessage(error),
  });
  return { records: [deadLetterFor(options.group, record, error, attempts, options.clock.now())], state: [] };
}
