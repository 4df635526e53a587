import type { Clock } from '../core/ports/clock.js';
import { MemoryService } from '../app/memory-service.js';
import { UserErasure } from '../app/user-erasure.js';
import type { Runtime } from './runtime.js';
import { Replays } from '../app/replays.js';
import { versionConfigJson } from './version-config.js';

/**
 * The memory service over a runtime (either mode): the one place its parts are wired. `lightmem serve`, the
 * MCP server and the CLI commands all call the service this builds.
 */
export function memoryServiceOf(runtime: Runtime, clock: Clock): MemoryService {
  const config = runtime.config;
  const erasure = new UserErasure({
    log: runtime.eventLog,
    // Erasure reaches every version: the first one's own store here, the later ones' below.
    store: runtime.replay.firstStore,
    ledger: runtime.ledger,
    clock,
    laterVersions: runtime.replay.laterVersions,
    runHistories: runtime.runHistories,
  });
  const replay = runtime.replay;
  return new MemoryService({
    log: runtime.eventLog,
    store: runtime.store,
    embedder: runtime.components.embedder,
    clock,
    cues: config.search,
    waitForDrain: (timeoutMs) =>
      runtime.waitForDrain({ signal: AbortSignal.timeout(timeoutMs) }).then(
        () => true,
        () => false,
      ),
    usage: (filter) => runtime.ledger.totals(filter),
    eraseUser: (tenantId, userId) => erasure.erase(tenantId, userId),
    resumeErasures: () => erasure.resumeIncomplete(),
    embedderFor: runtime.embedderFor,
    replays: new Replays({ ...replay, configJson: versionConfigJson(config), clock }),
    consolidate: (scope, options) =>
      runtime.consolidate(scope, {
        dryRun: options.dryRun,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      }),
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
