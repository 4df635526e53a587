import {
  AggregatorRegistry,
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';
import { isMainThread } from 'node:worker_threads';
import { installMetricsBackend, otherThreadMetrics, type MetricName } from './meters.js';

/**
 * The process's Prometheus metrics (prom-client): one registry per thread, these metric objects in it (the
 * backend of meters.ts, installed when this module is loaded), and `metricsText`, the text format that
 * `/metrics` answers (the API's and every `lightmem service`'s). The
 * pipeline thread of `lightmem serve` has a registry of its own and posts its content to the thread that
 * started it every few seconds (worker-pipeline-runner.ts); `metricsText` adds them up.
 *
 * Labels carry ids (stage, tenant, model, error code), never turn text or secrets.
 */
export const registry = new Registry();

const seconds = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

const stageRecords = new Counter({
  name: 'lightmem_stage_records_total',
  help: 'Records a stage processed (committed batches; dead-lettered records included)',
  labelNames: ['stage'] as const,
  registers: [registry],
});

const stageBatchSeconds = new Histogram({
  name: 'lightmem_stage_batch_duration_seconds',
  help: 'Time a stage took over a batch, retries and isolation of a failing record included',
  labelNames: ['stage'] as const,
  buckets: seconds,
  registers: [registry],
});

const stageErrors = new Counter({
  name: 'lightmem_stage_errors_total',
  help: 'Failed attempts of a stage batch, by error code and whether it is retried',
  labelNames: ['stage', 'code', 'retryable'] as const,
  registers: [registry],
});

const deadLetters = new Counter({
  name: 'lightmem_dead_letters_total',
  help: 'Records a stage could not process and dead-lettered, by error code',
  labelNames: ['stage', 'code'] as const,
  registers: [registry],
});

export const stagePending = new Gauge({
  name: 'lightmem_stage_pending_records',
  help: "Records waiting for a stage: the end of its input minus what it committed (the stage's lag)",
  labelNames: ['stage'] as const,
  registers: [registry],
});

const llmCalls = new Counter({
  name: 'lightmem_llm_calls_total',
  help: 'LLM calls by tenant, stage, model and outcome (ok, repaired, rejected, failed, reused from the ledger)',
  labelNames: ['tenant', 'stage', 'model', 'outcome'] as const,
  registers: [registry],
});

const llmTokens = new Counter({
  name: 'lightmem_llm_tokens_total',
  help: 'LLM tokens by tenant, stage, model and kind (prompt, completion)',
  labelNames: ['tenant', 'stage', 'model', 'kind'] as const,
  registers: [registry],
});

const llmSeconds = new Histogram({
  name: 'lightmem_llm_call_duration_seconds',
  help: 'Latency of LLM calls that were sent (not those answered from the ledger)',
  labelNames: ['stage', 'model'] as const,
  buckets: seconds,
  registers: [registry],
});

const consolidationDecisions = new Counter({
  name: 'lightmem_consolidation_decisions_total',
  help: 'Sleep-time consolidation decisions by type (update, supersede, merge, ignore)',
  labelNames: ['type'] as const,
  registers: [registry],
});

const searchSeconds = new Histogram({
  name: 'lightmem_search_duration_seconds',
  help: 'Time to answer a memory search (embedding the query included), by outcome (ok, error)',
  labelNames: ['outcome'] as const,
  buckets: seconds,
  registers: [registry],
});

const erasures = new Counter({
  name: 'lightmem_erasures_total',
  help: 'Users erased (each erasure request that completed)',
  registers: [registry],
});

const replays = new Counter({
  name: 'lightmem_replays_total',
  help: 'Replay actions: start, switch, drop',
  labelNames: ['action'] as const,
  registers: [registry],
});

const counters: Partial<Record<MetricName, Counter>> = {
  lightmem_stage_records_total: stageRecords,
  lightmem_stage_errors_total: stageErrors,
  lightmem_dead_letters_total: deadLetters,
  lightmem_llm_calls_total: llmCalls,
  lightmem_llm_tokens_total: llmTokens,
  lightmem_consolidation_decisions_total: consolidationDecisions,
  lightmem_erasures_total: erasures,
  lightmem_replays_total: replays,
};
const histograms: Partial<Record<MetricName, Histogram>> = {
  lightmem_stage_batch_duration_seconds: stageBatchSeconds,
  lightmem_llm_call_duration_seconds: llmSeconds,
  lightmem_search_duration_seconds: searchSeconds,
};

// From now on the counts and timings of this thread (meters.ts) land in this registry.
installMetricsBackend({
  inc: (name, labels, value) => counters[name]?.inc(labels, value),
  observe: (name, labels, value) => histograms[name]?.observe(labels, value),
});

// CPU, memory, event-loop lag and handles of the process, once (the main thread's registry).
if (isMainThread) collectDefaultMetrics({ register: registry, prefix: 'lightmem_' });

export function threadMetricsSnapshot(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
  return registry.getMetricsAsJSON();
}

/** What a /metrics endpoint needs to answer: the stages' lag, when this process can see it. */
export interface MetricsSources {
  readonly lag?: (() => Promise<readonly { stage: string; end: number; committed: number }[]>) | undefined;
}

/** The Prometheus text exposition of this process (every thread), with the lag read now. */
export async function metricsText(sources: MetricsSources = {}): Promise<string> {
  if (sources.lag !== undefined) {
    stagePending.reset();
    for (const lag of await sources.lag()) {
      stagePending.set({ stage: lag.stage }, Math.max(0, lag.end - lag.committed));
    }
  }
  const others = otherThreadMetrics() as MetricObjectWithValues<MetricValue<string>>[][];
  if (others.length === 0) return registry.metrics();
  const merged = AggregatorRegistry.aggregate([await registry.getMetricsAsJSON(), ...others]);
  return merged.metrics();
}

export const metricsContentType = registry.contentType;
