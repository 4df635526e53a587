/**
 * The pipeline thread (see WorkerPipelineRunner): opens the data dir and the configured models on its
 * own, runs the pipeline versions' stages until told to stop, and reports each stage's status to the thread that
 * started it. Ownership of the pipeline (the lock) stays with that thread.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { LightmemConfig } from '../core/config.js';
import { errorCode, errorFields, errorMessage, isRetryable } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { stderrLogger } from './stderr-logger.js';
import { EmbeddedRuntime } from './embedded-runtime.js';
import { StopMessage, type WorkerMessage } from './worker-pipeline-runner.js';
import { retrying } from '../core/backoff.js';
import { threadMetricsSnapshot } from '../telemetry/metrics.js';
import { startTracing } from '../telemetry/tracing-setup.js';

/** How often the thread's metrics are posted to the thread that serves /metrics. */
const metricsEveryMs = 2_000;

const port = parentPort;
if (port === null) throw new Error('pipeline-worker.ts runs as a worker thread');
const data = workerData as { config: unknown; env?: Record<string, string | undefined> };
const config = LightmemConfig.parse(data.config);
const logger = stderrLogger(config.logLevel, { thread: 'pipeline' });
const post = (message: WorkerMessage): void => port.postMessage(message);

lowerThreadPriority(config.pipeline.priority);
// The thread's own tracer provider (OpenTelemetry's API is per thread), when tracing is on.
const tracing = await startTracing(config, 'pipeline', logger);
const controller = new AbortController();
port.on('message', (message: unknown) => {
  if (StopMessage.safeParse(message).success) controller.abort();
});
// Models are already installed by the thread that started this one: never fetch twice. Opening meets
// the other processes' write lock now and then (migrations, schemas): that is waited out, not a failure.
const runtime = await retrying(
  () =>
    EmbeddedRuntime.open(
      { ...config, models: { ...config.models, autoFetch: false } },
      { logger, clock: systemClock, env: data.env ?? {} },
    ),
  { attempts: 10, baseMs: 200, maxMs: 5_000, signal: controller.signal },
).catch((error: unknown) => {
  post(failure(error));
  process.exit(1);
});
// The stages' metrics live in this thread's registry: the thread that serves /metrics gets a copy.
const postMetrics = async (): Promise<void> =>
  post({ type: 'metrics', snapshot: await threadMetricsSnapshot() });
const metricsTimer = setInterval(() => void postMetrics().catch(() => undefined), metricsEveryMs);
try {
  await runtime.runPipelines(controller.signal, (stage, status) => post({ type: 'status', stage, status }));
} catch (error) {
  post(failure(error));
  process.exitCode = 1;
} finally {
  clearInterval(metricsTimer);
  await postMetrics().catch(() => undefined);
  await runtime.close();
  await tracing?.shutdown();
  port.close();
}

function failure(error: unknown): WorkerMessage {
  return {
    type: 'failed',
    code: errorCode(error),
    message: errorMessage(error),
    retryable: isRetryable(error),
  };
}

/**
 * Lowers the scheduling priority of this thread (Linux: a thread id is a valid target of setpriority),
 * before the model sessions start their threads, which inherit it. Best effort: elsewhere it is a no-op.
 */
function lowerThreadPriority(niceness: number): void {
  if (niceness <= 0) return;
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
    if (Number.isInteger(threadId)) setPriority(threadId, niceness);
  } catch (error) {
    logger.debug('cannot lower the pipeline thread priority', errorFields(error));
  }
}
