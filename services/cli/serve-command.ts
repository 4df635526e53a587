import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { systemClock } from '../core/ports/clock.js';
import { Ingestion } from '../app/ingestion.js';
import { MemorySearch } from '../app/memory-search.js';
import { createHttpApi } from '../api/http-server.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { openContext } from './context.js';

export const serveUsage = `lightmem serve [--port 8787] [--host 127.0.0.1] [--data-dir D] [--mode embedded|distributed]
  Runs the pipeline and the HTTP API: POST /v1/events, POST /v1/search, GET /v1/memories/:id, GET /healthz.
  --mode distributed: the API on Kafka + Elasticsearch; the stages run as \`lightmem service <stage>\`.`;

export async function serveCommand(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    port: { type: 'string', short: 'p' },
    host: { type: 'string' },
  });
  if (values['help'] === true) {
    console.log(serveUsage);
    return 0;
  }
  const port = stringOption(values, 'port') === undefined ? undefined : intOption(values, 'port', 8787);
  const host = stringOption(values, 'host');
  const { config, logger, runtime } = await openContext(
    values,
    { logLevel: 'info' },
    {
      ...(port === undefined && host === undefined
        ? {}
        : { server: { ...(port === undefined ? {} : { port }), ...(host === undefined ? {} : { host }) } }),
    },
  );
  if (!runtime.startPipeline()) {
    logger.warn(`the pipeline is run by ${runtime.pipelineDescription}; this process serves the API`);
  }
  const server = createHttpApi({
    ingestion: new Ingestion(runtime.eventLog, systemClock),
    search: new MemorySearch(runtime.store, runtime.components.embedder, runtime.config.search),
    store: runtime.store,
    defaultTenant: config.defaultTenant,
    maxBodyBytes: config.server.maxBodyBytes,
    logger,
    waitForDrain: (timeoutMs) =>
      runtime.waitForDrain({ signal: AbortSignal.timeout(timeoutMs) }).then(
        () => true,
        () => false,
      ),
    health: async () => {
      const lags = await runtime.lag();
      return {
        mode: runtime.config.mode,
        pipeline: runtime.isRunningPipeline ? 'running' : `run by ${runtime.pipelineDescription}`,
        pending: Object.fromEntries(lags.map((lag) => [lag.stage, Math.max(0, lag.end - lag.committed)])),
      };
    },
  });
  server.listen(config.server.port, config.server.host);
  try {
    await once(server, 'listening');
  } catch (error) {
    await runtime.close();
    throw error;
  }
  const address = server.address() as AddressInfo;
  logger.info('lightmem serving', {
    url: `http://${address.address}:${address.port}`,
    dataDir: config.dataDir,
  });
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  await once(stop.signal, 'abort');
  logger.info('shutting down');
  server.close();
  server.closeAllConnections();
  await runtime.close();
  return 0;
}
