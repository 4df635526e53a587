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
import {
  LightmemError,
  RetriesExhaustedError,
  errorMessage,
  isRetryable,
  errorFields,
  errorCode,
} from '../core/errors.js';
import { backoffMs } from '../core/backoff.js';
import { payloadExcerpt } from '../core/model/dead-letter.js';
import { count, startTimer } from '../telemetry/meters.js';
import { inStageSpans } from '../telemetry/trace-context.js';

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
    errorCode: errorCode(error),
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

/** How a stage batch is retried: the same for every event log. */
export interface BatchPolicy {
  /** Tries of a batch (or of one record being isolated) that fails with retryable errors, in all. */
  readonly maxAttempts: number;
  /** Back-off: first delay and cap, spread by ±jitter (a fraction, as kafkajs' randomizationFactor). */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly jitter: number;
  /** How often `heartbeat` runs while a handler works or a retry waits. */
  readonly heartbeatMs: number;
}

export const defaultBatchPolicy: BatchPolicy = {
  maxAttempts: 8,
  retryBaseMs: 200,
  retryMaxMs: 30_000,
  jitter: 0.2,
  heartbeatMs: 3_000,
};

/**
 * Encodes each output record once: runBatch's schema check encodes it, and the commit (and its retries)
 * reuse the bytes.
 */
export function encodeOnce(encode: (record: OutputRecord) => Buffer): (record: OutputRecord) => Buffer {
  const encoded = new WeakMap<OutputRecord, Buffer>();
  return (record) => {
    let bytes = encoded.get(record);
    if (bytes === undefined) {
      bytes = encode(record);
      encoded.set(record, bytes);
    }
    return bytes;
  };
}

/** A policy with the defaults filled in for what `overrides` leaves out. */
export function batchPolicyOf(overrides: Partial<BatchPolicy>): BatchPolicy {
  const defined = Object.entries(overrides).filter(([, value]) => value !== undefined);
  return { ...defaultBatchPolicy, ...(Object.fromEntries(defined) as Partial<BatchPolicy>) };
}

export interface BatchRunOptions {
  readonly group: string;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly policy: BatchPolicy;
  /** Throws (invalid_input) when an output record does not match its schema: that input is dead-lettered. */
  readonly check: (output: StageOutput) => void;
  /**
   * Called every `policy.heartbeatMs` while the handler runs and while a retry waits (Kafka: heartbeat, so
   * the group keeps this member however long an LLM batch takes). Its failures are ignored.
   */
  readonly heartbeat?: (() => Promise<void>) | undefined;
  /** Which failures are worth retrying; default `isRetryable`. */
  readonly retryable?: ((error: unknown) => boolean) | undefined;
}

/**
 * The one policy for a stage batch, used by every event log. The handler runs over the whole batch; a
 * retryable failure is retried with jittered exponential back-off up to `policy.maxAttempts` tries, then
 * fails with a RetriesExhaustedError (retryable, the last failure as its cause: the stage's supervisor
 * restarts the stage, so the batch is retried later and never dropped). A non-retryable failure re-runs
 * the batch record by record (each seeing the state written by the records before it) and dead-letters
 * exactly the records that fail. The result is one combined output for the caller to commit at once;
 * null when the signal aborts first.
 */
export async function runBatch<T extends TopicName>(
  records: readonly LogRecord<T>[],
  handler: BatchHandler<T>,
  state: StateReader,
  options: BatchRunOptions,
): Promise<StageOutput | null> {
  const stop = startTimer('lightmem_stage_batch_duration_seconds', { stage: options.group });
  // The handler gets the records with the context of their stage span (what it hands to LLM calls and writes).
  const traced = await inStageSpans(records, options.group, (inSpans) =>
    runBatchOnce(inSpans, handler, state, options),
  );
  // A batch that is given up (aborted, or retries exhausted: it throws) is not counted: it runs again.
  if (traced === null) return null;
  stop();
  count('lightmem_stage_records_total', { stage: options.group }, records.length);
  const { output, traceContextOf } = traced;
  return {
    records: output.records.map((record) => {
      const traceContext = traceContextOf(record.key);
      return traceContext === undefined ? record : { ...record, traceContext };
    }),
    state: output.state,
  };
}

async function runBatchOnce<T extends TopicName>(
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
  options.logger.warn('batch failed; isolating the failing records', {
    group: options.group,
    topic: only?.topic,
    offset: only?.offset,
    records: records.length,
    ...errorFields(whole.error),
  });
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
  const { policy } = options;
  const retryable = options.retryable ?? isRetryable;
  for (let attempts = 1; ; attempts++) {
    if (options.signal.aborted) return null;
    try {
      const output = await withHeartbeat(() => handler(records, state), options);
      options.check(output);
      return { ok: true, output };
    } catch (error) {
      if (options.signal.aborted) return null;
      const retried = retryable(error);
      count('lightmem_stage_errors_total', {
        stage: options.group,
        code: errorCode(error),
        retryable: String(retried),
      });
      if (!retried) return { ok: false, error, attempts };
      const where = { group: options.group, topic: records[0]?.topic, offset: records[0]?.offset };
      if (attempts >= policy.maxAttempts) {
        throw new RetriesExhaustedError(
          `stage ${options.group}: batch at ${where.topic ?? '?'}@${where.offset ?? '?'} kept failing`,
          attempts,
          error,
        );
      }
      const delay = backoffMs(attempts, policy.retryBaseMs, policy.retryMaxMs, policy.jitter);
      options.logger.warn('stage failed, retrying', {
        ...where,
        attempt: attempts,
        delayMs: delay,
        ...errorFields(error),
      });
      await waitWithHeartbeat(delay, options);
    }
  }
}

/** Runs `work`, calling `options.heartbeat` every `policy.heartbeatMs` until it settles. */
async function withHeartbeat<R>(
  work: () => Promise<R>,
  options: Pick<BatchRunOptions, 'heartbeat' | 'policy'>,
): Promise<R> {
  const beat = options.heartbeat;
  if (beat === undefined) return work();
  let beating = false;
  const timer = setInterval(() => {
    if (beating) return;
    beating = true;
    beat()
      .catch(() => undefined)
      .finally(() => {
        beating = false;
      });
  }, options.policy.heartbeatMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** Sleeps up to `ms` (less when the signal aborts), heartbeating every `policy.heartbeatMs`. */
export async function waitWithHeartbeat(
  ms: number,
  options: Pick<BatchRunOptions, 'signal' | 'heartbeat' | 'policy'>,
): Promise<void> {
  const until = Date.now() + ms;
  while (!options.signal.aborted && Date.now() < until) {
    await sleep(Math.min(options.policy.heartbeatMs, until - Date.now()), undefined, {
      signal: options.signal,
    }).catch(() => undefined);
    if (options.heartbeat !== undefined && !options.signal.aborted)
      await options.heartbeat().catch(() => undefined);
  }
}

function deadLettered(
  record: LogRecord,
  error: unknown,
  attempts: number,
  options: BatchRunOptions,
): StageOutput {
  count('lightmem_dead_letters_total', { stage: options.group, code: errorCode(error) });
  options.logger.error('record dead-lettered', {
    group: options.group,
    topic: record.topic,
    offset: record.offset,
    ...errorFields(error),
  });
  return { records: [deadLetterFor(options.group, record, error, attempts, options.clock.now())], state: [] };
}
