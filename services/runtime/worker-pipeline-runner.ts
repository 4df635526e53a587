import { Worker } from 'node:worker_threads';
import { z } from 'zod';
import type { LightmemConfig } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { LightmemError, errorMessage } from '../core/errors.js';
import type { PipelineRunner } from './pipeline-ownership.js';
import type { StageName, StageStatus } from './pipeline.js';
import { StageStatusSchema } from './pipeline-health.js';
import { setThreadMetrics } from '../telemetry/meters.js';

/** What the pipeline thread tells the thread that started it. */
export const WorkerMessage = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('status'),
    stage: z.enum(['compressor', 'segmenter', 'summarizer', 'indexer', 'applier']),
    status: StageStatusSchema,
  }),
  z.object({ type: z.literal('failed'), code: z.string(), message: z.string(), retryable: z.boolean() }),
  /** The thread's metrics registry (getMetricsAsJSON), every few seconds: /metrics adds them up. */
  z.object({ type: z.literal('metrics'), snapshot: z.array(z.unknown()) }),
]);
export type WorkerMessage = z.infer<typeof WorkerMessage>;

/** What the thread that started the pipeline thread tells it: stop (finish the batch in hand, commit, exit). */
export const StopMessage = z.object({ type: z.literal('stop') });
export type StopMessage = z.infer<typeof StopMessage>;

/** What the pipeline thread is given at start. */
export interface WorkerData {
  readonly config: LightmemConfig;
  /** The environment the runtime reads (the LLM key): only the variables it needs. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The variables of the environment the pipeline reads (the LLM key), and no others. */
function llmEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string | undefined> {
  return { LIGHTMEM_LLM_API_KEY: env['LIGHTMEM_LLM_API_KEY'], OPENAI_API_KEY: env['OPENAI_API_KEY'] };
}

const fromSource = import.meta.url.endsWith('.ts');
const workerFile = new URL(fromSource ? './pipeline-worker.ts' : './pipeline-worker.js', import.meta.url);

/**
 * The pipeline thread. Compiled (dist): the worker file beside this one. From source (tsx: tests,
 * scripts/dev-cli.ts): on Node 20 a worker does not get the loader hooks its process was started with,
 * so it registers tsx's itself before it imports the TypeScript file.
 */
function startWorker(data: WorkerData): Worker {
  if (!fromSource) return new Worker(workerFile, { workerData: data });
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(workerFile.href)}); });`;
  return new Worker(code, { eval: true, workerData: data });
}

/**
 * Runs the pipeline in a worker thread with its own connections and model sessions, so the CPU work of
 * the stages (model runs, which onnxruntime-node does on the calling thread, tokenizing, SQLite writes)
 * never holds up the thread that answers API requests; the worker also lowers its own scheduling
 * priority (`pipeline.priority`), so a search competes with the backlog and wins.
 */
export class WorkerPipelineRunner implements PipelineRunner {
  constructor(
    private readonly config: LightmemConfig,
    private readonly logger: Logger,
    private readonly env: Readonly<Record<string, string | undefined>> = {},
  ) {}

  run(signal: AbortSignal, onStatus: (stage: StageName, status: StageStatus) => void): Promise<void> {
    const data: WorkerData = { config: this.config, env: llmEnv(this.env) };
    const worker = startWorker(data);
    return new Promise<void>((resolve, reject) => {
      let failure: LightmemError | null = null;
      let deadline: NodeJS.Timeout | null = null;
      const stop = (): void => {
        worker.postMessage({ type: 'stop' } satisfies StopMessage);
        // A stage that will not stop (a model run or a store write that hangs) must not keep the process.
        deadline = setTimeout(() => void worker.terminate(), this.config.pipeline.shutdownGraceMs);
        deadline.unref();
      };
      signal.addEventListener('abort', stop, { once: true });
      worker.on('message', (raw: unknown) => {
        const parsed = WorkerMessage.safeParse(raw);
        if (!parsed.success) {
          this.logger.warn('unreadable message from the pipeline thread', { error: parsed.error.message });
          return;
        }
        const message = parsed.data;
        if (message.type === 'status') onStatus(message.stage, message.status);
        else if (message.type === 'metrics') setThreadMetrics('pipeline', message.snapshot);
        else failure = new LightmemError('internal', message.message, { retryable: message.retryable });
      });
      worker.once('error', (error) => {
        failure ??= new LightmemError('internal', `the pipeline thread crashed: ${errorMessage(error)}`, {
          cause: error,
        });
      });
      worker.once('exit', (code) => {
        signal.removeEventListener('abort', stop);
        if (deadline !== null) clearTimeout(deadline);
        if (failure !== null) reject(failure);
        else if (code !== 0 && !signal.aborted)
          reject(new LightmemError('internal', `the pipeline thread exited with code ${code}`));
        else resolve();
      });
    });
  }
}
