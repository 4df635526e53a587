import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../core/ports/logger.js';
import { LightmemError, errorFields } from '../core/errors.js';
import type { Caller } from '../app/caller.js';
import type { MemoryService } from '../app/memory-service.js';
import { errorBody } from '../api/http-errors.js';
import { jsonSchema } from '../api/openapi.js';
import { mcpTools } from './mcp-tools.js';
import { inSpan } from '../telemetry/trace-context.js';

export interface McpServerOptions {
  /** Who calls every tool of this server: the API key's tenant and scopes (or the local operator). */
  readonly caller: Caller;
  readonly version: string;
  readonly logger: Logger;
}

const instructions =
  'Long-term memory of conversations. add_turns stores what was said (per user and conversation); search_memory finds what a user said or was told, each memory citing its source turns; get_memory and memory_history show one memory and its versions. Every tool works within the tenant of the API key.';

/**
 * An MCP server (official SDK) whose tools are the memory service's operations for one caller. The tools
 * are listed and called by our own handlers rather than the SDK's registerTool: the arguments are decoded by
 * the HTTP API's schemas, so a bad one comes back as a tool error with our code and field (the SDK's own
 * validation would answer a protocol error without them). Errors of the operation are tool errors too,
 * `{"error": {code, message, field, retryable}}` as the HTTP API answers them.
 */
export function createMcpServer(service: MemoryService, options: McpServerOptions): McpServer {
  const mcp = new McpServer(
    { name: 'lightmem', title: 'lightmem-stream memory', version: options.version },
    { capabilities: { tools: {} }, instructions },
  );
  const listed = mcpTools.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: { type: 'object' as const, ...jsonSchema(tool.input, 'input') },
    annotations: { title: tool.title, ...tool.annotations },
  }));
  mcp.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listed }));
  mcp.server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name, arguments: args } = request.params;
    const tool = mcpTools.find((t) => t.name === name);
    try {
      if (tool === undefined) {
        throw new LightmemError(
          'not_found',
          `no tool ${name}; the tools: ${mcpTools.map((t) => t.name).join(', ')}`,
          {
            field: 'name',
          },
        );
      }
      const answer = await inSpan(
        `mcp tools/call ${tool.name}`,
        { kind: 'server', attributes: { 'mcp.tool.name': tool.name } },
        (span) => tool.call(service, options.caller, args, extra.signal, span.traceparent),
      );
      return { content: [{ type: 'text', text: answer.text }], structuredContent: answer.structured };
    } catch (error) {
      return toolError(error, name, options.logger);
    }
  });
  return mcp;
}

/** An error as a tool result: our code, message, field and retryable flag; internal details only logged. */
function toolError(error: unknown, tool: string, logger: Logger): CallToolResult {
  if (!(error instanceof LightmemError) || error.code === 'internal') {
    logger.error('MCP tool failed', {
      tool,
      ...errorFields(error),
    });
  }
  const body = errorBody(error);
  return {
    isError: true,
    content: [{ type: 'text', text: JSON.stringify(body) }],
    structuredContent: { ...body },
  };
}
