import type { FastifyInstance } from 'fastify';
import type { Logger } from '../core/ports/logger.js';
import type { Clock } from '../core/ports/clock.js';
import type { TenantDirectory } from '../core/ports/tenant-directory.js';
import type { Runtime } from '../runtime/runtime.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import { createHttpApp } from './http-app.js';
import { apiRoutes } from './routes.js';

/** The HTTP API over a runtime (either mode) and the deployment's tenant directory: what `lightmem serve` runs. */
export function createRuntimeHttpApi(
  runtime: Runtime,
  directory: TenantDirectory,
  options: { logger: Logger; clock: Clock; version: string },
): FastifyInstance {
  return createHttpApp({
    routes: apiRoutes(memoryServiceOf(runtime, options.clock)),
    authenticate: (apiKey) => directory.authenticate(apiKey),
    server: runtime.config.server,
    logger: options.logger,
    clock: options.clock,
    version: options.version,
  });
}
