import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import { temporalConnectionOptions } from './temporal-connection.js';
import { LightmemError } from '../../core/errors.js';
import type { Logger } from '../../core/ports/logger.js';
import type { ConsolidationDeps } from '../../../workflows/consolidation/activities.js';
import { temporalActivities, type VersionDeps } from './consolidation-activities.js';
import type { TemporalEndpoint } from './consolidation-entity.js';
import { temporalError, workerSetupError } from './temporal-errors.js';
import { installTemporalLogger } from './temporal-logger.js';

export interface ConsolidationWorkerOptions extends TemporalEndpoint {
  /** The ports of the activities (their activity context comes from Temporal). */
  readonly deps: Omit<ConsolidationDeps, 'context'>;
  /** The ports of a later pipeline version's activities (absent: this worker consolidates the first only). */
  readonly versionDeps?: VersionDeps | undefined;
  /** Aborting it shuts the worker down gracefully. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Activities run at once (each decides up to `llm.concurrency` tasks at once); default 8. */
  readonly maxConcurrentActivities?: number | undefined;
  /** How long in-flight activities may finish after the signal before they are cancelled; default 5 s. */
  readonly shutdownGraceMs?: number | undefined;
  /** Called once the worker polls its task queue. */
  readonly onReady?: (() => void) | undefined;
  readonly identity?: string | undefined;
}

/**
 * The workflow file the worker bundles: the compiled `.js` beside this module's compiled code (dist/), or
 * the `.ts` source when run from source (tsx).
 */
export function consolidationWorkflowsPath(): string {
  for (const extension of ['js', 'ts']) {
    const path = fileURLToPath(
      new URL(`../../../workflows/consolidation/consolidation.workflow.${extension}`, import.meta.url),
    );
    if (existsSync(path)) return path;
  }
  throw new LightmemError(
    'config_invalid',
    'workflows/consolidation/consolidation.workflow.{js,ts} not found beside the Temporal adapter (is the build complete?)',
  );
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * Runs a Temporal worker of sleep-time consolidation (`lightmem service consolidator`): the entity and
 * run-once workflows, and the activities over the given ports, on one task queue. Resolves once the signal
 * aborts and the worker has shut down (in-flight activities get `shutdownGraceMs` to finish, then are
 * cancelled: their retries resume from their last heartbeat). Fails with a retryable `LightmemError` when
 * the server cannot be reached.
 */
export async function runConsolidationWorker(options: ConsolidationWorkerOptions): Promise<void> {
  const logger = options.logger.child({ taskQueue: options.taskQueue });
  installTemporalLogger(options.logger);
  if (options.signal.aborted) return;
  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect(temporalConnectionOptions(options));
  } catch (error) {
    throw temporalError(error, `connecting to Temporal at ${options.address}`);
  }
  try {
    let worker: Worker;
    try {
      worker = await Worker.create({
        connection,
        namespace: options.namespace,
        taskQueue: options.taskQueue,
        workflowsPath: consolidationWorkflowsPath(),
        activities: temporalActivities(options.deps, options.versionDeps),
        maxConcurrentActivityTaskExecutions: options.maxConcurrentActivities ?? 8,
        shutdownGraceTime: options.shutdownGraceMs ?? 5_000,
        ...(options.identity === undefined ? {} : { identity: options.identity }),
      });
    } catch (error) {
      throw workerSetupError(error, `starting the consolidation worker on ${options.taskQueue}`);
    }
    if (options.signal.aborted) return;
    logger.info('consolidation worker running', { address: options.address, namespace: options.namespace });
    try {
      await worker.runUntil(async () => {
        options.onReady?.();
        await aborted(options.signal);
      });
    } catch (error) {
      // The worker stopped on its own (the server went away, say): whoever runs it may start it again.
      throw temporalError(error, `running the consolidation worker on ${options.taskQueue}`);
    }
    logger.info('consolidation worker stopped');
  } finally {
    await connection.close();
  }
}
