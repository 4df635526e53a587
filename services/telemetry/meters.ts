/**
 * Where the code counts and times what it does, without loading a metrics library: each call goes to the
 * backend that metrics.ts installs when a process serves `/metrics` (the API, a `lightmem service`, the
 * pipeline thread of `lightmem serve`). In a command that serves none (`lightmem search`, `ingest`) there
 * is no backend and every call is a no-op, so the command does not pay for prom-client at start.
 */

export type MetricName =
  | 'lightmem_stage_records_total'
  | 'lightmem_stage_batch_duration_seconds'
  | 'lightmem_stage_errors_total'
  | 'lightmem_dead_letters_total'
  | 'lightmem_llm_calls_total'
  | 'lightmem_llm_tokens_total'
  | 'lightmem_llm_call_duration_seconds'
  | 'lightmem_consolidation_decisions_total'
  | 'lightmem_search_duration_seconds'
  | 'lightmem_erasures_total'
  | 'lightmem_replays_total';

export type Labels = Readonly<Record<string, string>>;

export interface MetricsBackend {
  /** Adds to a counter. */
  inc(name: MetricName, labels: Labels, value: number): void;
  /** Observes a histogram (seconds). */
  observe(name: MetricName, labels: Labels, value: number): void;
}

let backend: MetricsBackend | null = null;

/** Sends every count and timing of this thread to `target` from now on (metrics.ts, once). */
export function installMetricsBackend(target: MetricsBackend): void {
  backend = target;
}

export function count(name: MetricName, labels: Labels = {}, value = 1): void {
  backend?.inc(name, labels, value);
}

export function observe(name: MetricName, labels: Labels, seconds: number): void {
  backend?.observe(name, labels, seconds);
}

/** Starts timing; the returned function observes the seconds since, with `more` labels added. */
export function startTimer(name: MetricName, labels: Labels = {}): (more?: Labels) => void {
  const started = performance.now();
  return (more = {}) => observe(name, { ...labels, ...more }, (performance.now() - started) / 1000);
}

/** Times `work` with an `outcome` label (ok or error). */
export async function timed<R>(name: MetricName, work: () => Promise<R>): Promise<R> {
  const stop = startTimer(name);
  try {
    const result = await work();
    stop({ outcome: 'ok' });
    return result;
  } catch (error) {
    stop({ outcome: 'error' });
    throw error;
  }
}

/** Counts the decisions of a consolidation activity that changes memories (a dry run changes nothing). */
export function countDecisions(
  input: { readonly dryRun: boolean },
  result: { readonly decisions: readonly { readonly op: string; readonly merge: boolean }[] },
): void {
  if (input.dryRun) return;
  for (const decision of result.decisions) {
    count('lightmem_consolidation_decisions_total', { type: decision.merge ? 'merge' : decision.op });
  }
}

/** The last metrics each other thread posted (the pipeline thread of `lightmem serve`), by thread. */
const otherThreads = new Map<string, readonly unknown[]>();

/** Keeps a thread's latest metrics (its registry's getMetricsAsJSON), replacing the previous. */
export function setThreadMetrics(thread: string, snapshot: readonly unknown[]): void {
  otherThreads.set(thread, snapshot);
}

export function otherThreadMetrics(): (readonly unknown[])[] {
  return [...otherThreads.values()];
}
