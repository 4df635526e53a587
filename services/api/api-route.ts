import type { z } from 'zod';
import type { ApiKeyScope } from '../core/api-keys.js';
import { InvalidInputError } from '../core/errors.js';
import type { Caller } from '../app/caller.js';

export type HttpMethod = 'GET' | 'POST' | 'DELETE';

/** What a handler answers: a status and a JSON body (validated against `responses[status]` in tests). */
export interface RouteAnswer {
  readonly status: number;
  readonly body: unknown;
}

export interface ResponseSpec {
  readonly description: string;
  readonly schema: z.ZodType;
}

interface RouteSpec<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  readonly method: HttpMethod;
  /** Fastify's path syntax: `/v1/users/:userId`. */
  readonly url: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: string;
  /** The scope the API key needs; null: a public route (health, the document itself). */
  readonly scope: ApiKeyScope | null;
  readonly params?: P;
  readonly query?: Q;
  readonly body?: B;
  /** The successful answers (errors are documented for every route alike). */
  readonly responses: Readonly<Record<number, ResponseSpec>>;
  readonly handle: (input: {
    readonly caller: Caller;
    readonly params: z.output<P>;
    readonly query: z.output<Q>;
    readonly body: z.output<B>;
    readonly signal: AbortSignal;
    /** The request's span (a W3C traceparent; undefined when tracing is off): work it starts continues it. */
    readonly traceContext: string | undefined;
  }) => Promise<RouteAnswer>;
}

/** A route with its schemas, its types erased: the router and the OpenAPI document both read it. */
export interface ApiRoute {
  readonly method: HttpMethod;
  readonly url: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description: string | undefined;
  readonly tag: string;
  readonly scope: ApiKeyScope | null;
  readonly params: z.ZodType | undefined;
  readonly query: z.ZodType | undefined;
  readonly body: z.ZodType | undefined;
  readonly responses: Readonly<Record<number, ResponseSpec>>;
  /** Decodes the raw parts with the schemas (400 naming the field), then runs the handler. */
  invoke(
    caller: Caller,
    raw: {
      params: unknown;
      query: unknown;
      body: unknown;
      signal: AbortSignal;
      traceContext?: string | undefined;
    },
  ): Promise<RouteAnswer>;
}

export function route<
  P extends z.ZodType = z.ZodUndefined,
  Q extends z.ZodType = z.ZodUndefined,
  B extends z.ZodType = z.ZodUndefined,
>(spec: RouteSpec<P, Q, B>): ApiRoute {
  return {
    method: spec.method,
    url: spec.url,
    operationId: spec.operationId,
    summary: spec.summary,
    description: spec.description,
    tag: spec.tag,
    scope: spec.scope,
    params: spec.params,
    query: spec.query,
    body: spec.body,
    responses: spec.responses,
    invoke: async (caller, raw) =>
      spec.handle({
        caller,
        params: decodePart(spec.params, raw.params, '') as z.output<P>,
        query: decodePart(spec.query, raw.query, '') as z.output<Q>,
        body: decodePart(spec.body, raw.body, '') as z.output<B>,
        signal: raw.signal,
        traceContext: raw.traceContext,
      }),
  };
}

/** A request part decoded by its schema; the first problem is a 400 naming the field (`(body)` for the whole). */
export function decodePart(schema: z.ZodType | undefined, value: unknown, prefix: string): unknown {
  if (schema === undefined) return undefined;
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue?.path.map(String).join('.') ?? '';
  const field = `${prefix}${path}` || '(body)';
  throw new InvalidInputError(`${field}: ${issue?.message ?? 'invalid'}`, field);
}
