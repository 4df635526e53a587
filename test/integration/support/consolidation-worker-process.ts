// A consolidation worker in a process of its own (`node --import tsx consolidation-worker-process.ts
// '<json>'`), so that a test can kill it with SIGKILL mid-run and start another. It opens the test's SQLite
// store, event log and LLM ledger, decides with the LLM policy against the given OpenAI-protocol server,
// prints `ready` once it polls its task queue, and shuts down gracefully on SIGTERM.
import { z } from 'zod';
import { SqliteEventLog } from '../../../services/adapters/sqlite/sqlite-event-log.js';
import { SqliteLlmLedger } from '../../../services/adapters/sqlite/sqlite-llm-ledger.js';
import { SqliteMemoryStore } from '../../../services/adapters/sqlite/sqlite-memory-store.js';
import { runConsolidationWorker } from '../../../services/adapters/temporal/consolidation-worker.js';
import { LightmemConfig } from '../../../services/core/config.js';
import { systemClock } from '../../../services/core/ports/clock.js';
import { configuredDecider, consolidationDeps } from '../../../services/runtime/consolidation-setup.js';
import { stderrLogger } from '../../../services/runtime/stderr-logger.js';

export const WorkerProcessOptions = z.object({
  address: z.string().min(1),
  namespace: z.string().min(1),
  taskQueue: z.string().min(1),
  storeFile: z.string().min(1),
  logFile: z.string().min(1),
  ledgerFile: z.string().min(1),
  /** The OpenAI-protocol server (`/v1` base URL) and its model. */
  llmBaseUrl: z.string().min(1),
  llmModel: z.string().min(1),
  /** The embedder of the stored vectors. */
  embedderId: z.string().min(1),
  identity: z.string().min(1),
});
export type WorkerProcessOptions = z.infer<typeof WorkerProcessOptions>;

async function main(): Promise<void> {
  const options = WorkerProcessOptions.parse(JSON.parse(process.argv[2] ?? '{}'));
  const logger = stderrLogger((process.env['LIGHTMEM_TEST_LOG'] as 'debug' | undefined) ?? 'error', {
    process: options.identity,
  });
  const config = LightmemConfig.parse({
    llm: {
      baseUrl: options.llmBaseUrl,
      model: options.llmModel,
      concurrency: 1,
      maxRetries: 2,
      timeoutMs: 20_000,
    },
    consolidation: { policy: 'llm' },
  });
  const store = SqliteMemoryStore.open(options.storeFile);
  const log = SqliteEventLog.open(options.logFile, { logger, clock: systemClock });
  const ledger = SqliteLlmLedger.open(options.ledgerFile);
  const stop = new AbortController();
  process.once('SIGTERM', () => stop.abort());
  process.once('SIGINT', () => stop.abort());
  try {
    await runConsolidationWorker({
      address: options.address,
      namespace: options.namespace,
      taskQueue: options.taskQueue,
      deps: consolidationDeps({
        config,
        store,
        log,
        embedderId: options.embedderId,
        decider: configuredDecider(config, { LIGHTMEM_LLM_API_KEY: 'sk-test' }, systemClock, ledger),
        clock: systemClock,
        logger,
      }),
      signal: stop.signal,
      logger,
      identity: options.identity,
      onReady: () => process.stdout.write('ready\n'),
    });
  } finally {
    await ledger.close();
    await log.close();
    await store.close();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `consolidation worker failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
