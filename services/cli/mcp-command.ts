import { once } from 'node:events';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { InvalidInputError, LightmemError } from '../core/errors.js';
import { parseApiKey } from '../core/api-keys.js';
import { systemClock } from '../core/ports/clock.js';
import { operatorOf, type Caller } from '../app/caller.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import { openTenantDirectory } from '../runtime/tenant-directory-setup.js';
import type { LightmemConfig } from '../core/config.js';
import { createMcpServer } from '../mcp/mcp-server.js';
import { commonOptions, parse, stringOption } from './args.js';
import { openContext } from './context.js';
import { packageVersion } from './package-version.js';
import { startTracing } from '../telemetry/tracing-setup.js';

export const mcpUsage = `lightmem mcp [--tenant T] [--data-dir D]
  An MCP server on stdin/stdout (for Claude Desktop, Cursor, agents): tools add_turns, search_memory,
  get_memory, memory_history, forget_user, consolidate. It runs the pipeline too (embedded mode), so
  added turns become memories. The API key comes from LIGHTMEM_API_KEY: every tool works in its tenant,
  with its scopes. Without a key, --tenant T serves the machine's operator in tenant T (every scope, as
  the other commands); with neither it refuses to start. Logs go to stderr. Over HTTP the same tools are
  at /mcp of \`lightmem serve\`.`;

/** The caller of every tool: the key's principal, or the operator of --tenant; refused otherwise. */
async function callerOf(config: LightmemConfig, tenant: string | undefined): Promise<Caller> {
  const key = process.env['LIGHTMEM_API_KEY']?.trim();
  if (key === undefined || key === '') {
    if (tenant !== undefined) return operatorOf(tenant);
    throw new InvalidInputError(
      'an API key is required: set LIGHTMEM_API_KEY (lightmem key create --tenant T --scopes read,write), or name --tenant T to serve as the local operator',
      'LIGHTMEM_API_KEY',
    );
  }
  if (parseApiKey(key) === null) {
    throw new LightmemError('unauthorized', 'LIGHTMEM_API_KEY is not an API key', {
      field: 'LIGHTMEM_API_KEY',
    });
  }
  const directory = await openTenantDirectory(config, systemClock);
  try {
    const principal = await directory.authenticate(key);
    if (principal === null) {
      throw new LightmemError('unauthorized', 'LIGHTMEM_API_KEY is not valid or was revoked', {
        field: 'LIGHTMEM_API_KEY',
      });
    }
    if (tenant !== undefined && tenant !== principal.tenantId) {
      throw new LightmemError('forbidden', '--tenant names another tenant than the API key’s', {
        field: 'tenant',
      });
    }
    return principal;
  } finally {
    await directory.close();
  }
}

export async function mcpCommand(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, { ...commonOptions, tenant: { type: 'string' } });
  if (values['help'] === true) {
    console.log(mcpUsage);
    return 0;
  }
  const { config, logger, runtime } = await openContext(values, { logLevel: 'warn' }, {}, { serving: true });
  const tracing = await startTracing(config, 'mcp', logger);
  try {
    const caller = await callerOf(config, stringOption(values, 'tenant'));
    if (!runtime.startPipeline()) {
      logger.warn(`the pipeline is run by ${runtime.pipelineDescription}; this process serves MCP`);
    }
    const server = createMcpServer(memoryServiceOf(runtime, systemClock), {
      caller,
      version: packageVersion(),
      logger,
    });
    const transport = new StdioServerTransport();
    const closed = new AbortController();
    transport.onclose = () => closed.abort();
    // The client closes stdin when it is done (stdio has no other goodbye); a signal stops it as well.
    process.stdin.once('end', () => closed.abort());
    const onSignal = (): void => closed.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    await server.connect(transport);
    logger.info('lightmem MCP server on stdio', { tenantId: caller.tenantId, key: caller.keyId });
    if (!closed.signal.aborted) await once(closed.signal, 'abort');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await server.close();
    return 0;
  } finally {
    await runtime.close();
    await tracing?.shutdown();
  }
}
