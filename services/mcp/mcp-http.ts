import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Caller } from '../app/caller.js';
import type { MemoryService } from '../app/memory-service.js';
import type { Logger } from '../core/ports/logger.js';
import { createMcpServer } from './mcp-server.js';

/**
 * One MCP request over streamable HTTP, stateless (no session id generator): a server and a transport per POST, answering JSON (no
 * session to keep, so any API replica can take any request). The caller was authenticated by the HTTP API.
 */
export async function handleMcpRequest(
  service: MemoryService,
  options: { caller: Caller; version: string; logger: Logger },
  request: IncomingMessage,
  response: ServerResponse,
  body: unknown,
): Promise<void> {
  const server = createMcpServer(service, options);
  const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true });
  response.once('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(request, response, body);
}
