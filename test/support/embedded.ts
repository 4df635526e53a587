import { loadConfig } from '../../services/runtime/load-config.js';
import { stderrLogger } from '../../services/runtime/stderr-logger.js';
import { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { Ingestion } from '../../services/app/ingestion.js';
import { decodeTurnInput } from '../../services/ingest/index.js';
import { systemClock } from '../../services/core/ports/clock.js';
import type { Embedder } from '../../services/core/ports/embedder.js';
import type { LightmemConfigInput } from '../../services/core/config.js';

/** An embedded runtime in this process, on a data dir, with its pipeline running. */
export async function openRuntime(
  dataDir: string,
  overrides: LightmemConfigInput = {},
  embedder: Embedder | null = null,
): Promise<EmbeddedRuntime> {
  const config = loadConfig({ env: {}, overrides: { ...overrides, dataDir } });
  const runtime = await EmbeddedRuntime.open(config, {
    logger: stderrLogger('warn'),
    clock: systemClock,
    models: { embedder },
  });
  runtime.startPipeline();
  return runtime;
}

/** Appends raw event objects (as the HTTP API would receive them), closes their sessions and waits. */
export async function ingestEvents(runtime: EmbeddedRuntime, events: readonly unknown[]): Promise<void> {
  const items = events.map((raw, index) => ({
    line: index + 1,
    label: `#${index}`,
    raw: JSON.stringify(raw),
    result: decodeTurnInput(raw, {}),
  }));
  const failed = items.find((item) => !item.result.ok);
  if (failed !== undefined) throw new Error(`bad fixture ${failed.label}: ${JSON.stringify(failed.result)}`);
  await new Ingestion(runtime.eventLog, systemClock).ingest(items, { source: 'test', endSessions: true });
  await runtime.waitForDrain();
}
