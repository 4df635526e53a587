import type { ApiKeyScope } from '../../services/core/api-keys.js';
import { systemClock } from '../../services/core/ports/clock.js';
import type { Logger } from '../../services/core/ports/logger.js';
import { SqliteTenantDirectory } from '../../services/adapters/sqlite/sqlite-tenant-directory.js';
import { createRuntimeHttpApi } from '../../services/api/runtime-http-api.js';
import type { Runtime } from '../../services/runtime/runtime.js';
import { apiClient, type ApiClient } from './api-client.js';
import { silentLogger } from './memory-logger.js';

export interface InProcessApi {
  readonly base: string;
  readonly directory: SqliteTenantDirectory;
  /** A client with a new key of the tenant (created on first use), with these scopes. */
  client(tenantId: string, scopes?: readonly ApiKeyScope[]): Promise<ApiClient>;
  close(): Promise<void>;
}

/** The HTTP API over a runtime in this process, with its own (in-memory) tenant directory. */
export async function serveInProcess(runtime: Runtime, logger: Logger = silentLogger): Promise<InProcessApi> {
  const directory = SqliteTenantDirectory.open(':memory:');
  const app = createRuntimeHttpApi(runtime, directory, { logger, clock: systemClock, version: 'test' });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    base,
    directory,
    client: async (tenantId, scopes = ['admin']) => {
      if ((await directory.tenant(tenantId)) === undefined) await directory.createTenant(tenantId);
      const { apiKey } = await directory.createKey({ tenantId, scopes });
      return apiClient(base, apiKey);
    },
    close: async () => {
      app.server.closeAllConnections();
      await app.close();
      await directory.close();
    },
  };
}
