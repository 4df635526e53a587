import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Logger } from '../core/ports/logger.js';
import { InvalidInputError, LightmemError, causeOf, errorMessage } from '../core/errors.js';
import { decodeTurnInput, type InputItem, type TurnInput } from '../ingest/index.js';
import type { Ingestion } from '../app/ingestion.js';
import { memoryView, maxSearchLimit, type MemorySearch } from '../app/memory-search.js';
import { historyView } from '../app/memory-history.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { LlmUsageTotals } from '../core/ports/llm-ledger.js';
import { errorBody, retryAfterSeconds, statusFor } from './http-errors.js';

export interface HttpApiDeps {
  readonly ingestion: Ingestion;
  readonly search: MemorySearch;
  readonly store: MemoryStore;
  readonly defaultTenant: string;
  readonly maxBodyBytes: number;
  readonly logger: Logger;
  /** Waits until the pipeline has processed everything appended so far (for `?wait=true`). */
  readonly waitForDrain: (timeoutMs: number) => Promise<boolean>;
  /** How many of these turns are still buffered (their session open), after a drain. */
  readonly bufferedTurns: (turns: readonly TurnInput[]) => Promise<number>;
  /** LLM calls and tokens per model of a tenant (the cost ledger), since an instant. */
  readonly usage: (filter: {
    tenantId: string;
    since?: number | undefined;
  }) => Promise<readonly LlmUsageTotals[]>;
  /** `ready: false` answers 503 (the pipeline does not run, or a stage failed), with the reasons. */
  readonly health: () => Promise<{ ready: boolean } & Record<string, unknown>>;
}

const EventsBody = z.object({
  events: z.array(z.unknown()).min(1).max(10_000),
  /** Close the sessions of these events after appending them (end of a call or chat). */
  endSession: z.boolean().default(false),
});

const isoOrMs = z.union([
  z.number().int(),
  z.string().transform((s, ctx) => {
    const ms = Date.parse(s);
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: `not a timestamp: ${JSON.stringify(s)}` });
      return z.NEVER;
    }
    return ms;
  }),
]);

const SearchBody = z.object({
  tenantId: z.string().optional(),
  userId: z.string().min(1),
  agentId: z.string().optional(),
  conversationId: z.string().optional(),
  query: z.string().min(1),
  limit: z.number().int().min(1).max(maxSearchLimit).default(10),
  from: isoOrMs.optional(),
  to: isoOrMs.optional(),
  includeSuperseded: z.boolean().default(false),
  /** The versions that were valid then (ISO time or epoch ms). */
  asOf: isoOrMs.optional(),
});

function decodeBody<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path.join('.') || '(body)';
  throw new InvalidInputError(`${field}: ${issue?.message ?? 'invalid'}`, field);
}

/**
 * The HTTP API: POST /v1/events, POST /v1/search, GET /v1/memories/:id, GET /v1/usage, GET /healthz. Every error is JSON
 * `{error: {code, message, field, retryable}}`. The tenant comes from the body or the X-Lightmem-Tenant
 * header, else the configured default tenant.
 */
export function createHttpApi(deps: HttpApiDeps): Server {
  return createServer((request, response) => {
    handle(deps, request, response).catch((error: unknown) => {
      const status = statusFor(error);
      if (status >= 500)
        deps.logger.error('request failed', {
          url: request.url,
          error: errorMessage(error),
          cause: causeOf(error),
        });
      const retryAfter = retryAfterSeconds(error);
      send(
        response,
        status,
        errorBody(error),
        retryAfter === null ? {} : { 'retry-after': String(retryAfter) },
      );
    });
  });
}

async function handle(deps: HttpApiDeps, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const tenantHeader = request.headers['x-lightmem-tenant'];
  const tenant =
    (typeof tenantHeader === 'string' && tenantHeader !== '' ? tenantHeader : undefined) ??
    deps.defaultTenant;
  const route = `${request.method ?? 'GET'} ${url.pathname}`;

  if (route === 'GET /healthz') {
    const health = await deps.health();
    send(response, health.ready ? 200 : 503, { status: health.ready ? 'ok' : 'unavailable', ...health });
    return;
  }
  if (route === 'POST /v1/events') {
    const body = decodeBody(EventsBody, await readJson(request, deps.maxBodyBytes));
    const items: InputItem[] = body.events.map((raw, index) => {
      const text = JSON.stringify(raw) ?? 'undefined';
      // Order within the batch stands in for seq when the caller gives a turnId but no seq.
      const result = decodeTurnInput(raw, { tenantId: tenant, seq: index });
      const labelled = result.ok
        ? result
        : { ok: false as const, error: { ...result.error, field: `events.${index}.${result.error.field}` } };
      return { line: null, label: `events[${index}]`, raw: text.slice(0, 64 * 1024), result: labelled };
    });
    const report = await deps.ingestion.ingest(items, { source: 'http', endSessions: body.endSession });
    const wait = url.searchParams.get('wait') === 'true';
    // processed: every posted turn is searchable (the pipeline caught up and none waits in a buffer of
    // an open session); buffered: how many still wait for their session to end (or the idle flush).
    let processed: { processed: boolean; buffered?: number } | null = null;
    if (wait) {
      const turns = items.flatMap((item) =>
        item.result.ok && item.result.event.kind === 'turn' ? [item.result.event] : [],
      );
      const drained = await deps.waitForDrain(30_000);
      const buffered = drained ? await deps.bufferedTurns(turns) : null;
      processed = { processed: buffered === 0, ...(buffered === null ? {} : { buffered }) };
    }
    send(response, 202, {
      accepted: report.accepted,
      duplicates: report.duplicates,
      rejected: items.flatMap((item, index) =>
        item.result.ok ? [] : [{ index, field: item.result.error.field, message: item.result.error.message }],
      ),
      sessionEnds: report.sessionEnds,
      ...processed,
    });
    return;
  }
  if (route === 'POST /v1/search') {
    const body = decodeBody(SearchBody, await readJson(request, deps.maxBodyBytes));
    const results = await deps.search.search({
      scope: {
        tenantId: body.tenantId ?? tenant,
        userId: body.userId,
        agentId: body.agentId,
        conversationId: body.conversationId,
      },
      query: body.query,
      limit: body.limit,
      from: body.from,
      to: body.to,
      includeSuperseded: body.includeSuperseded,
      asOf: body.asOf,
    });
    send(response, 200, { results });
    return;
  }
  if (route === 'GET /v1/usage') {
    const sinceParam = url.searchParams.get('since');
    const since = sinceParam === null ? undefined : instantParam(sinceParam, 'since');
    const rows = await deps.usage({ tenantId: tenant, since });
    const models = rows.map((row) => ({
      model: row.model,
      calls: row.calls,
      failedCalls: row.failedCalls,
      reusedAnswers: row.reusedAnswers,
      promptTokens: row.promptTokens,
      completionTokens: row.completionTokens,
      latencyMs: row.latencyMs,
    }));
    const total = (key: 'calls' | 'failedCalls' | 'reusedAnswers' | 'promptTokens' | 'completionTokens') =>
      models.reduce((sum, row) => sum + row[key], 0);
    send(response, 200, {
      tenantId: tenant,
      since: since ?? null,
      llm: {
        calls: total('calls'),
        failedCalls: total('failedCalls'),
        reusedAnswers: total('reusedAnswers'),
        promptTokens: total('promptTokens'),
        completionTokens: total('completionTokens'),
        byModel: models,
      },
    });
    return;
  }
  const historyMatch = /^\/v1\/memories\/([^/]+)\/history$/.exec(url.pathname);
  if (request.method === 'GET' && historyMatch !== null) {
    const id = decodeURIComponent(historyMatch[1] ?? '');
    const userId = url.searchParams.get('userId') ?? undefined;
    const history = await deps.store.history({ tenantId: tenant, userId }, id);
    if (history === undefined)
      throw new LightmemError('not_found', `no memory ${id} in this scope`, { field: 'id' });
    send(response, 200, historyView(id, history));
    return;
  }
  const memoryMatch = /^\/v1\/memories\/([^/]+)$/.exec(url.pathname);
  if (request.method === 'GET' && memoryMatch !== null) {
    const id = decodeURIComponent(memoryMatch[1] ?? '');
    const userId = url.searchParams.get('userId') ?? undefined;
    const entry = await deps.store.get({ tenantId: url.searchParams.get('tenantId') ?? tenant, userId }, id);
    if (entry === undefined)
      throw new LightmemError('not_found', `no memory ${id} in this scope`, { field: 'id' });
    send(response, 200, memoryView(entry));
    return;
  }
  throw new LightmemError('not_found', `no route ${route}`);
}

/** A query parameter that is epoch ms or an ISO timestamp. */
function instantParam(value: string, field: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (Number.isNaN(ms))
    throw new InvalidInputError(`${field}: not a timestamp: ${JSON.stringify(value)}`, field);
  return ms;
}

async function readJson(request: IncomingMessage, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer: Buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > maxBytes) {
      throw new InvalidInputError(`request body is over the ${maxBytes}-byte limit`, '(body)');
    }
    chunks.push(buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch (error) {
    throw new InvalidInputError('request body is not valid JSON', '(body)', error);
  }
}

function send(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (response.headersSent) return;
  const text = JSON.stringify(body);
  response.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}
