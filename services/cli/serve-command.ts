import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LightmemConfig } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { systemClock } from '../core/ports/clock.js';
import { LightmemError, errorFields } from '../core/errors.js';
import { operatorOf } from '../app/caller.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import type { Runtime } from '../runtime/runtime.js';
import type { TenantDirectory } from '../core/ports/tenant-directory.js';
import { createRuntimeHttpApi } from '../api/runtime-http-api.js';
import { openTenantDirectory } from '../runtime/tenant-directory-setup.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { packageVersion } from './package-version.js';
import { startTracing } from '../telemetry/tracing-setup.js';
import { openContext } from './context.js';

export const serveUsage = `lightmem serve [--port 8787] [--host 127.0.0.1] [--data-dir D] [--mode embedded|distributed]
  Runs the pipeline and the HTTP API (OpenAPI document at /openapi.json). Every request carries
  Authorization: Bearer <API key>. On the first start (no tenant yet) it creates the tenant
  \`defaultTenant\` with an admin key and writes the key to <data dir>/api-key.
  --mode distributed: the API on Kafka + Elasticsearch; the stages run as \`lightmem service <stage>\`.`;

/** The file the first start writes the first key to (readable by its owner only). */
export function apiKeyFile(config: LightmemConfig): string {
  return join(config.dataDir, 'api-key');
}

/**
 * The first start of a deployment: with no tenant yet, creates the default tenant and an admin key, and
 * writes the key to `<data dir>/api-key` (mode 0600), so the quickstart's curl lines can read it.
 */
async function bootstrapTenant(
  config: LightmemConfig,
  directory: TenantDirectory,
  logger: Logger,
): Promise<void> {
  if ((await directory.tenants()).length > 0) return;
  try {
    await directory.createTenant(config.defaultTenant);
  } catch (error) {
    // Another replica created it first: its key is its own to hand out.
    if (error instanceof LightmemError && error.code === 'conflict') return;
    throw error;
  }
  const issued = await directory.createKey({
    tenantId: config.defaultTenant,
    scopes: ['admin'],
    name: 'first start',
  });
  const file = apiKeyFile(config);
  // Distributed mode keeps nothing else in the data dir: it may not exist yet.
  mkdirSync(config.dataDir, { recursive: true });
  writeFileSync(file, `${issued.apiKey}\n`, { mode: 0o600 });
  logger.info('created the first tenant and its admin API key', {
    tenantId: config.defaultTenant,
    id: issued.key.keyId,
    writtenTo: file,
  });
}

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
  const tracing = await startTracing(config, 'api', logger);
  let directory: TenantDirectory;
  try {
    directory = await openTenantDirectory(config, systemClock, { serving: true });
    await bootstrapTenant(config, directory, logger);
  } catch (error) {
    await runtime.close();
    throw error;
  }
  if (!runtime.startPipeline()) {
    logger.warn(`the pipeline is run by ${runtime.pipelineDescription}; this process serves the API`);
  }
  // Every replica does it (distributed: the tombstones are in the Kafka keyring); finishing one is idempotent.
  await resumeErasures(runtime, logger);
  const app = createRuntimeHttpApi(runtime, directory, {
    logger,
    clock: systemClock,
    version: packageVersion(),
  });
  let url: string;
  try {
    url = await app.listen({ port: config.server.port, host: config.server.host });
  } catch (error) {
    await directory.close();
    await runtime.close();
    throw error;
  }
  logger.info('lightmem serving', {
    url,
    dataDir: config.dataDir,
    extractor: runtime.components.extractor.version,
  });
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  await once(stop.signal, 'abort');
  logger.info('shutting down');
  app.server.closeAllConnections();
  await app.close();
  await directory.close();
  await runtime.close();
  await tracing?.shutdown();
  return 0;
}

/** Erasures a crash interrupted are finished before the API answers (their tombstones say which). */
async function resumeErasures(runtime: Runtime, logger: Logger): Promise<void> {
  try {
    const receipts = await memoryServiceOf(runtime, systemClock).resumeErasures(
      operatorOf(runtime.config.defaultTenant),
    );
    for (const receipt of receipts) {
      logger.warn('finished an erasure a crash had interrupted', {
        tenantId: receipt.tenantId,
        userId: receipt.userId,
        erasedAt: receipt.erasedAt,
      });
    }
  } catch (error) {
    logger.error('finishing interrupted erasures failed; erase those users again', {
      ...errorFields(error),
    });
  }
}
