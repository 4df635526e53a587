import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { LightmemConfig } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import type { Clock } from '../core/ports/clock.js';
import type { Principal } from '../core/ports/tenant-directory.js';
import { parseApiKey, scopeAllows, type ApiKeyScope } from '../core/api-keys.js';
import { LightmemError, RateLimitedError, errorFields } from '../core/errors.js';
import { tenantOf, type Caller } from '../app/caller.js';
import { errorBody, retryAfterSeconds, statusFor } from './http-errors.js';
import type { ApiRoute, HttpMethod } from './api-route.js';
import { openApiDocument } from './openapi.js';
import { Admission, originAllowed, parseJsonBody } from './request-guards.js';
import { RateLimiter } from './rate-limiter.js';
import { inServerSpan } from '../telemetry/trace-context.js';

export interface HttpAppDeps {
  readonly routes: readonly ApiRoute[];
  /** Who an API key is (null: unknown, malformed or revoked). */
  readonly authenticate: (apiKey: string) => Promise<Principal | null>;
  readonly server: LightmemConfig['server'];
  readonly logger: Logger;
  readonly clock: Clock;
  readonly version: string;
  /** `GET /metrics`: the Prometheus text and its content type (absent: no /metrics). No key, as health. */
  readonly metrics?: { text(): Promise<string>; contentType: string } | undefined;
  /** MCP over streamable HTTP at /mcp, with the same API keys (absent: no /mcp). */
  readonly mcp?: McpMount | undefined;
}

/** What the HTTP API needs of the MCP server: the scope each tool needs, and the handling of a request. */
export interface McpMount {
  /** The scope a tool needs (undefined: no such tool, which the MCP server itself answers). */
  scopeOf(tool: string): ApiKeyScope | undefined;
  handle(caller: Caller, request: IncomingMessage, response: ServerResponse, body: unknown): Promise<void>;
}

/** Where MCP is served, and its protected-resource metadata document (RFC 9728, as the MCP spec asks). */
export const mcpPath = '/mcp';
const mcpMetadataPath = '/.well-known/oauth-protected-resource/mcp';

/** A public route's caller: no tenant, no scope (public handlers use none). */
const anonymous: Caller = { tenantId: '', keyId: null, scopes: [] };

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
  }
}

/**
 * The HTTP API on Fastify: routes from the route table (decoded with their zod schemas), `GET
 * /openapi.json` from the same table, bearer API keys (the tenant comes from the key), per-key rate limits,
 * admission control (concurrent requests and buffered body bytes), JSON only (415 otherwise), a JSON depth
 * limit, an Origin check, 405 for a known path with another method, and every error as JSON `{error: {code,
 * message, field, retryable}}` (Node's own 400/431 answers included).
 */
export function createHttpApp(deps: HttpAppDeps): FastifyInstance {
  const { server: limits, logger } = deps;
  const app = Fastify({
    logger: false,
    bodyLimit: limits.maxBodyBytes,
    requestTimeout: limits.requestTimeoutMs,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 1024, ignoreTrailingSlash: false },
    frameworkErrors: (error, _request, reply) => {
      const body = errorBody(
        new LightmemError('invalid_input', `the URL is not valid: ${error.message}`, { field: '(path)' }),
      );
      void (reply as FastifyReply).code(400).send(body);
    },
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => {
      if (error.code === 'ECONNRESET' || !socket.writable) return;
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body = JSON.stringify({
        error: {
          code: 'invalid_input',
          message: status === 431 ? 'the request headers are too large' : 'the request is not valid HTTP',
          field: null,
          retryable: false,
        },
      });
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
  });
  app.server.maxConnections = limits.maxConnections;
  // Set per request by the authentication hook (a reference type cannot be the decorator's shared value).
  app.decorateRequest('caller', null as unknown as Caller);

  // JSON only: no other content type is parsed, so a web page cannot post a "simple" cross-site request.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, body === '' ? undefined : parseJsonBody(body as string, limits.maxJsonDepth));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  const admission = new Admission(limits);
  const rateLimiter = new RateLimiter(limits.rateLimit, deps.clock);
  const scopes = new Map<string, ApiRoute>();

  app.addHook('onRequest', async (request, reply) => {
    if (!originAllowed(request.headers.origin, limits.allowedOrigins)) {
      throw new LightmemError(
        'forbidden',
        `requests from the web origin ${request.headers.origin ?? ''} are not allowed`,
        {
          field: 'origin',
        },
      );
    }
    request.caller = anonymous;
    // No route for this method and path: 405 or 404 now, before Fastify judges a body the route would never
    // read (it answers 400 to a QUERY request without Content-Type, RFC 10008, before any 404 handler).
    if (request.is404) refuseUnrouted(request, reply);
    const route = scopes.get(`${request.method} ${request.routeOptions.url ?? ''}`);
    if (route?.scope != null || (deps.mcp !== undefined && request.routeOptions.url === mcpPath)) {
      const principal = await authenticated(request, deps.authenticate);
      const wait = rateLimiter.take(principal.keyId ?? principal.tenantId);
      if (wait > 0) throw new RateLimitedError('too many requests for this API key', wait);
      // The old tenant header may still be sent; naming another tenant than the key's is refused.
      tenantOf(principal, request.headers['x-lightmem-tenant'], 'x-lightmem-tenant');
      request.caller = principal;
    }
    const release = admission.admit(request.headers);
    reply.raw.once('close', release);
  });

  for (const route of deps.routes) {
    scopes.set(`${route.method} ${route.url}`, route);
    app.route({
      method: route.method,
      url: route.url,
      // One server span per request, a child of the caller's `traceparent` when it sends one; turns it
      // appends carry its context into the pipeline.
      handler: async (request, reply) =>
        inServerSpan(
          `${route.method} ${route.url}`,
          request.headers,
          { 'http.request.method': route.method, 'http.route': route.url },
          async (span) => {
            const answer = await route.invoke(request.caller, {
              params: request.params,
              query: request.query,
              body: request.body,
              signal: abortSignalOf(reply),
              traceContext: span.traceparent,
            });
            span.setAttribute('http.response.status_code', answer.status);
            return reply.code(answer.status).send(answer.body);
          },
        ),
    });
  }
  if (deps.mcp !== undefined) mountMcp(app, deps.mcp, logger);
  const metrics = deps.metrics;
  if (metrics !== undefined) {
    app.get('/metrics', async (_request, reply) =>
      reply.header('content-type', metrics.contentType).send(await metrics.text()),
    );
  }
  const document = openApiDocument(deps.routes, { version: deps.version });
  app.get('/openapi.json', async (_request, reply) => reply.send(document));

  // The methods of each route path, with the path's pattern compiled once (for 405 answers).
  const methodsByPath = new Map<string, { pattern: RegExp; methods: HttpMethod[] }>();
  for (const route of deps.routes) {
    const entry = methodsByPath.get(route.url) ?? { pattern: pathPattern(route.url), methods: [] };
    entry.methods.push(route.method);
    methodsByPath.set(route.url, entry);
  }
  /** 405 with Allow for a known path with another method, else 404. */
  function refuseUnrouted(request: FastifyRequest, reply: FastifyReply): never {
    const path = request.url.split('?')[0] ?? '';
    const allowed = [...methodsByPath.values()].find(({ pattern }) => pattern.test(path))?.methods;
    if (allowed !== undefined) {
      void reply.header('allow', allowed.join(', '));
      throw new LightmemError(
        'method_not_allowed',
        `${request.method} is not allowed here; use ${allowed.join(' or ')}`,
      );
    }
    throw new LightmemError('not_found', `no route ${request.method} ${path}`);
  }
  app.setNotFoundHandler(async (request, reply) => refuseUnrouted(request, reply));

  app.setErrorHandler(async (error, request, reply) => {
    // The client went away (a read request stream is destroyed once consumed: look at the socket).
    if (reply.raw.destroyed || request.raw.socket.destroyed) {
      logger.debug('client went away', { url: request.url, ...errorFields(error) });
      return;
    }
    const typed = typedError(error);
    const status = statusFor(typed);
    if (status >= 500 && status !== 503) {
      logger.error('request failed', {
        method: request.method,
        url: request.routeOptions.url ?? request.url.split('?')[0],
        ...errorFields(typed),
      });
    }
    const retryAfter = retryAfterSeconds(typed);
    if (retryAfter !== null) void reply.header('retry-after', String(retryAfter));
    if (status === 401 && !reply.hasHeader('www-authenticate')) {
      // On /mcp the challenge points to the resource metadata, where an MCP client learns how to authorize.
      const mcp = deps.mcp !== undefined && request.routeOptions.url === mcpPath;
      void reply.header(
        'www-authenticate',
        mcp ? `Bearer resource_metadata="${metadataUrl(request)}"` : 'Bearer',
      );
    }
    if (status === 413 || status === 503) void reply.header('connection', 'close');
    return reply.code(status).send(errorBody(typed));
  });
  return app;
}

/**
 * POST /mcp for the MCP server, with the key checked here as the MCP authorization spec says: 401 with the
 * metadata's address when it is missing or wrong (the hook), 403 `insufficient_scope` naming the scope when
 * a tool call needs one the key lacks. GET (a server-sent event stream) and DELETE (a session) are 405: the
 * server is stateless and answers JSON.
 */
function mountMcp(app: FastifyInstance, mount: McpMount, logger: Logger): void {
  app.post(mcpPath, async (request, reply) => {
    const lacking = lackingScope(request.caller, request.body, mount);
    if (lacking !== undefined) {
      void reply.header(
        'www-authenticate',
        `Bearer error="insufficient_scope", scope="${lacking}", resource_metadata="${metadataUrl(request)}"`,
      );
      throw new LightmemError('forbidden', `this API key lacks the ${lacking} scope`);
    }
    reply.hijack();
    try {
      await mount.handle(request.caller, request.raw, reply.raw, request.body);
    } catch (error) {
      logger.error('MCP request failed', errorFields(error));
      if (!reply.raw.headersSent) {
        reply.raw.writeHead(500, { 'content-type': 'application/json; charset=utf-8' });
        reply.raw.end(JSON.stringify(errorBody(error)));
      } else reply.raw.destroy();
    }
  });
  for (const method of ['GET', 'DELETE'] as const) {
    app.route({
      method,
      url: mcpPath,
      handler: async (_request, reply) => {
        void reply.header('allow', 'POST');
        throw new LightmemError('method_not_allowed', `${method} is not served on ${mcpPath}; use POST`);
      },
    });
  }
  // RFC 9728 protected-resource metadata, at the path-suffixed address and at the root one.
  for (const url of [mcpMetadataPath, '/.well-known/oauth-protected-resource']) {
    app.get(url, async (request, reply) =>
      reply.send({
        resource: `${baseUrl(request)}${mcpPath}`,
        resource_name: 'lightmem-stream memory (MCP)',
        bearer_methods_supported: ['header'],
        scopes_supported: ['read', 'write', 'admin'],
        // No authorization server: keys are issued by the deployment (`lightmem key create`).
        authorization_servers: [],
      }),
    );
  }
}

/** The scope the first tool call of a JSON-RPC message (or batch) needs and the caller lacks. */
function lackingScope(caller: Caller, body: unknown, mount: McpMount): ApiKeyScope | undefined {
  for (const message of Array.isArray(body) ? body : [body]) {
    if (typeof message !== 'object' || message === null) continue;
    const { method, params } = message as { method?: unknown; params?: unknown };
    if (method !== 'tools/call' || typeof params !== 'object' || params === null) continue;
    const name = (params as { name?: unknown }).name;
    const scope = typeof name === 'string' ? mount.scopeOf(name) : undefined;
    if (scope !== undefined && !scopeAllows(caller.scopes, scope)) return scope;
  }
  return undefined;
}

function baseUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

function metadataUrl(request: FastifyRequest): string {
  return `${baseUrl(request)}${mcpMetadataPath}`;
}

/** `Authorization: Bearer <key>` → the key's principal, or 401. */
async function authenticated(
  request: FastifyRequest,
  authenticate: HttpAppDeps['authenticate'],
): Promise<Caller> {
  const header = request.headers.authorization;
  if (header === undefined)
    throw new LightmemError('unauthorized', 'an API key is required: Authorization: Bearer <key>');
  const token = /^Bearer +(\S+)\s*$/i.exec(header)?.[1];
  if (token === undefined || parseApiKey(token) === null) {
    throw new LightmemError('unauthorized', 'the Authorization header is not Bearer <API key>', {
      field: 'authorization',
    });
  }
  const principal = await authenticate(token);
  if (principal === null)
    throw new LightmemError('unauthorized', 'the API key is not valid or was revoked', {
      field: 'authorization',
    });
  return principal;
}

/** Fastify's own errors (body too large, bad content type, bad JSON) as our typed ones. */
function typedError(error: unknown): unknown {
  if (error instanceof LightmemError) return error;
  const fastifyError = error as { code?: unknown; statusCode?: unknown; message?: unknown };
  const message = typeof fastifyError.message === 'string' ? fastifyError.message : 'invalid request';
  switch (fastifyError.statusCode) {
    case 413:
      return new LightmemError('payload_too_large', message, { field: '(body)', cause: error });
    case 415:
      return new LightmemError('unsupported_media_type', 'the request body must be application/json', {
        field: 'content-type',
        cause: error,
      });
    case 400:
      return new LightmemError('invalid_input', message, { field: '(body)', cause: error });
    case 503:
      return new LightmemError('overloaded', message, { retryable: true, cause: error });
    default:
      return error;
  }
}

function pathPattern(url: string): RegExp {
  return new RegExp(`^${url.replace(/:[A-Za-z]+/g, '[^/]+')}$`);
}

/** Aborted when the client goes away before its answer was sent, so long waits (`?wait=true`) stop. */
function abortSignalOf(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
