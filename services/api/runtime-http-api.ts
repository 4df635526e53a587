import type { Server } from 'node:http';
import type { Logger } from '../core/ports/logger.js';
import { systemClock } from '../core/ports/clock.js';
import type { Runtime } from '../runtime/runtime.js';
import { Ingestion } from '../app/ingestion.js';
import { MemorySearch } from '../app/memory-search.js';
import { bufferedTurns } from '../app/buffered-turns.js';
import { createHttpApi } from './http-server.js';

/** The HTTP API over a runtime (either mode): what `lightmem serve` listens with. */
export function createRuntimeHttpApi(runtime: Runtime, logger: Logger): Server {
  const config = runtime.config;
  return createHttpApi({
    ingestion: new Ingestion(runtime.eventLog, systemClock),
    search: new MemorySearch(runtime.store, runtime.components.embedder, config.search),
    store: runtime.store,
    defaultTenant: config.defaultTenant,
    maxBodyBytes: config.server.maxBodyBytes,
    logger,
    waitForDrain: (timeoutMs) =>
      runtime.waitForDrain({ signal: AbortSignal.timeout(timeoutMs) }).then(
        () => true,
        () => false,
      ),
    bufferedTurns: (turns) => bufferedTurns(runtime.eventLog, turns),
    usage: (filter) => runtime.ledger.totals(filter),
    health: async () => {
      const [health, lags] = await Promise.all([runtime.health(), runtime.lag()]);
      return {
        mode: config.mode,
        ...health,
        pending: Object.fromEntries(lags.map((lag) => [lag.stage, Math.max(0, lag.end - lag.committed)])),
      };
    },
  });
}
