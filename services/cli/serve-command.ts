import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createRuntimeHttpApi } from '../api/runtime-http-api.js';
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
    { serving: true },
  );
  if (!runtime.startPipeline()) {
    logger.warn(`the pipeline is run by ${runtime.pipelineDescription}; this process serves the API`);
  }
  const server = createRuntimeHttpApi(runtime, logger);
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
    extractor: runtime.components.extractor.version,
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
