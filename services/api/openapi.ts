import { z } from 'zod';
import { ErrorResponse } from '../app/api-schemas.js';
import type { ApiRoute } from './api-route.js';

type JsonSchema = Record<string, unknown>;

/** A zod schema as a JSON Schema (draft 2020-12), without its `$schema` line. */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const generated = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  delete generated['$schema'];
  return generated;
}

/** Path and query parameters of an object schema, one per property. */
function parameters(schema: z.ZodType | undefined, where: 'path' | 'query'): JsonSchema[] {
  if (schema === undefined) return [];
  const object = jsonSchema(schema, 'input');
  const properties = (object['properties'] ?? {}) as Record<string, JsonSchema>;
  const required = new Set((object['required'] ?? []) as string[]);
  return Object.entries(properties).map(([name, property]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    ...(typeof property['description'] === 'string' ? { description: property['description'] } : {}),
    schema: property,
  }));
}

const errorStatuses: Readonly<Record<number, string>> = {
  400: 'Invalid input: the error names the field',
  401: 'No API key, or one that is not valid (or revoked)',
  403: 'The key lacks the scope, names another tenant, or the browser origin is not allowed',
  404: 'Not found in the key’s tenant',
  413: 'The body is over the size limit',
  415: 'The body is not application/json',
  429: 'Too many requests for this key: retry after Retry-After seconds',
  503: 'The server is busy or a store is unavailable: retry after Retry-After seconds',
};

/** `/v1/users/:userId` → `/v1/users/{userId}` */
function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z]+)/g, '{$1}');
}

/** The OpenAPI 3.1 document of the routes, from the same zod schemas that validate them. */
export function openApiDocument(routes: readonly ApiRoute[], info: { version: string }): JsonSchema {
  const error = { 'application/json': { schema: jsonSchema(ErrorResponse, 'output') } };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      responses[status] = {
        description: response.description,
        content: { 'application/json': { schema: jsonSchema(response.schema, 'output') } },
      };
    }
    const statuses = route.scope === null ? [] : Object.keys(errorStatuses).map(Number);
    for (const status of statuses) {
      if (route.body === undefined && (status === 413 || status === 415)) continue;
      responses[String(status)] ??= { description: errorStatuses[status], content: error };
    }
    const operation = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description === undefined ? {} : { description: route.description }),
      tags: [route.tag],
      ...(route.scope === null ? { security: [] } : { 'x-required-scope': route.scope }),
      parameters: [...parameters(route.params, 'path'), ...parameters(route.query, 'query')],
      ...(route.body === undefined
        ? {}
        : {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema(route.body, 'input') } },
            },
          }),
      responses,
    };
    (paths[openApiPath(route.url)] ??= {})[route.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'lightmem-stream',
      version: info.version,
      description:
        'Long-term memory for LLM agents. Every request but health carries `Authorization: Bearer <API key>`; the tenant comes from the key.',
    },
    servers: [{ url: '/' }],
    components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
    security: [{ apiKey: [] }],
    paths,
  };
}
