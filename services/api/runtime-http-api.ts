import type { FastifyInstance } from 'fastify';
import type { Logger } from '../core/ports/logger.js';
import type { Clock } from '../core/ports/clock.js';
import type { TenantDirectory } from '../core/ports/tenant-directory.js';
import type { Runtime } from '../runtime/runtime.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import { createHttpApp } from './http-app.js';
import { apiRoutes } from './routes.js';
import { toolScope } from '../mcp/mcp-tools.js';
import { metricsContentType, metricsText } from '../telemetry/metrics.js';

/** The HTTP API over a runtime (either mode) and the deployment's tenant directory: what `lightmem serve` runs. */
export function createRuntimeHttpApi(
  runtime: Runtime,
  directory: TenantDirectory,
  options: { logger: Logger; clock: Clock; version: string },
): FastifyInstance {
  const service = memoryServiceOf(runtime, options.clock);
  return createHttpApp({
    routes: apiRoutes(service),
    metrics: runtime.config.telemetry.metrics
      ? { text: () => metricsText({ lag: () => runtime.lag() }), contentType: metricsContentType }
      : undefined,
    mcp: {
      scopeOf: toolScope,
      // The MCP SDK is loaded with the first MCP request, not with the API.
      handle: async (caller, request, response, body) => {
        const { handleMcpRequest } = await import('../mcp/mcp-http.js');
        const mcpOptions = { caller, version: options.version, logger: options.logger };
        await handleMcpRequest(service, mcpOptions, request, response, body);
      },
    },
    authenticate: (apiKey) => directory.authenticate(apiKey),
    server: runtime.config.server,
    logger: options.logger,
    clock: options.clock,
    version: options.version,
  });
}
