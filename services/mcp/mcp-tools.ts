import { z } from 'zod';
import type { ApiKeyScope } from '../core/api-keys.js';
import type { Caller } from '../app/caller.js';
import type { MemoryService } from '../app/memory-service.js';
import type { SearchResult } from '../app/memory-search.js';
import {
  ConsolidateRequest,
  EventsRequest,
  SearchRequest,
  UserMemoryPath,
  UserPath,
} from '../app/api-schemas.js';
import { decodePart } from '../api/api-route.js';

/**
 * The MCP tools: each one is an operation of the memory service (the same one the HTTP API calls), its
 * input decoded by the HTTP API's own schema (a bad argument is an `invalid_input` naming the field), the
 * scope the caller's key needs, and hints for the client. Nothing here depends on the MCP SDK: the
 * stdio and HTTP servers (mcp-server.ts) list and call them, and the HTTP API reads the scopes to refuse
 * a key that lacks one before the call (403, as the MCP authorization spec says).
 */

/** What a tool answers: text for the model and the same data as structured content. */
export interface ToolAnswer {
  readonly text: string;
  readonly structured: Record<string, unknown>;
}

export interface McpTool {
  readonly name: string;
  readonly title: string;
  readonly description: string;
  /** The scope the caller's API key needs. */
  readonly scope: ApiKeyScope;
  /** The arguments' schema (advertised as JSON Schema, decoded with zod). */
  readonly input: z.ZodType;
  readonly annotations: {
    readonly readOnlyHint: boolean;
    readonly destructiveHint: boolean;
    readonly idempotentHint: boolean;
    readonly openWorldHint: false;
  };
  /**
   * Decodes the arguments (InvalidInputError naming the field) and runs the operation for the caller, in
   * the trace of the call's span (a W3C traceparent; undefined when tracing is off).
   */
  call(
    service: MemoryService,
    caller: Caller,
    args: unknown,
    signal: AbortSignal,
    traceContext?: string,
  ): Promise<ToolAnswer>;
}

interface ToolSpec<S extends z.ZodType> extends Omit<McpTool, 'call' | 'input'> {
  readonly input: S;
  readonly run: (
    service: MemoryService,
    caller: Caller,
    input: z.output<S>,
    signal: AbortSignal,
    traceContext: string | undefined,
  ) => Promise<ToolAnswer>;
}

function tool<S extends z.ZodType>(spec: ToolSpec<S>): McpTool {
  const { run, ...rest } = spec;
  return {
    ...rest,
    call: (service, caller, args, signal, traceContext) =>
      run(service, caller, decodePart(spec.input, args ?? {}, '') as z.output<S>, signal, traceContext),
  };
}

/** A JSON answer: pretty-printed text and the object itself. */
function json(value: object): ToolAnswer {
  return { text: JSON.stringify(value, null, 2), structured: { ...value } };
}

const reads = {
  readOnlyHint: true,
  destructiveHint: false,
  idempotentHint: true,
  openWorldHint: false,
} as const;

/** `add_turns`: the events of POST /v1/events, under `turns`. */
export const AddTurnsInput = z.strictObject({
  turns: EventsRequest.shape.events,
  endSession: EventsRequest.shape.endSession,
  /** Answer once the turns are searchable (or 30 s have passed): `processed` and `buffered` say which. */
  wait: z.boolean().default(false),
});

const ConsolidateInput = z.strictObject({ userId: UserPath.shape.userId, ...ConsolidateRequest.shape });

/** Search results as text: one numbered memory each, with its id, time, speaker and source turns. */
export function searchText(query: string, results: readonly SearchResult[]): string {
  if (results.length === 0) return `no memories found for ${JSON.stringify(query)}`;
  const lines = [`${results.length} memories for ${JSON.stringify(query)}, best first:`];
  results.forEach((r, i) => {
    lines.push(`${i + 1}. [${r.id}] ${r.occurredAt} ${r.speaker}: ${r.text}`);
    lines.push(`   sources: ${r.sourceTurnIds.join(', ')}; score ${r.score.toFixed(3)}`);
  });
  return lines.join('\n');
}

export const mcpTools: readonly McpTool[] = [
  tool({
    name: 'add_turns',
    title: 'Add conversation turns',
    description:
      'Appends conversation turns to memory (idempotent per user, conversation and turn id). Each turn is an event as in POST /v1/events: userId, conversationId, turnId (or seq), role, text, occurredAt; optional sessionId, agentId, speaker. Invalid turns are reported in `rejected`, the others accepted. `endSession` closes their sessions (end of a call or chat) so they are memorized now; with `wait` the answer comes once they are searchable.',
    scope: 'write',
    input: AddTurnsInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    run: async (service, caller, input, _signal, traceContext) =>
      json(
        await service.ingest(caller, {
          events: input.turns,
          endSession: input.endSession,
          wait: input.wait,
          traceContext,
        }),
      ),
  }),
  tool({
    name: 'search_memory',
    title: "Search a user's memories",
    description:
      "Hybrid (BM25 + semantic) search of one user's memories. Optional: a narrower scope (agentId, conversationId, sessionId), a time range of when things happened (from, to), `asOf` (the memories as they were valid then) and `includeSuperseded`. Each result cites its id and the source turns it came from.",
    scope: 'read',
    input: SearchRequest,
    annotations: reads,
    run: async (service, caller, input) => {
      const results = await service.search(caller, input);
      return { text: searchText(input.query, results), structured: { results } };
    },
  }),
  tool({
    name: 'get_memory',
    title: 'Get one memory',
    description: 'One memory of a user by id (any version), with its provenance: source turns, validity.',
    scope: 'read',
    input: UserMemoryPath,
    annotations: reads,
    run: async (service, caller, input) => json(await service.get(caller, input)),
  }),
  tool({
    name: 'memory_history',
    title: "A memory's history",
    description:
      'Every version of a memory, oldest first, with the consolidation decisions that made and closed each one (and their reasons).',
    scope: 'read',
    input: UserMemoryPath,
    annotations: reads,
    run: async (service, caller, input) => json(await service.history(caller, input)),
  }),
  tool({
    name: 'forget_user',
    title: 'Forget a user',
    description:
      'Erases a user everywhere: every version of every memory, the conversation log, pending work; a tombstone keeps replays from bringing it back. Cannot be undone. Needs an admin key. Returns a receipt of what was removed.',
    scope: 'admin',
    input: UserPath,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    run: async (service, caller, input) => json(await service.eraseUser(caller, input)),
  }),
  tool({
    name: 'consolidate',
    title: "Consolidate a user's memories now",
    description:
      "Runs sleep-time consolidation of the user's new memories now: updates, supersessions and merges become new versions (the old ones stay in the history). `dryRun` decides and reports without changing anything.",
    scope: 'write',
    input: ConsolidateInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    run: async (service, caller, input, signal) =>
      json(await service.consolidate(caller, { ...input, signal })),
  }),
];

/** The scope a tool needs (undefined: no such tool). */
export function toolScope(name: string): ApiKeyScope | undefined {
  return mcpTools.find((t) => t.name === name)?.scope;
}
