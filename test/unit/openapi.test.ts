import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MemoryService } from '../../services/app/memory-service.js';
import { apiRoutes } from '../../services/api/routes.js';
import { openApiDocument } from '../../services/api/openapi.js';

describe('the OpenAPI document', () => {
  // The handlers are not called: the document needs only the routes' schemas.
  const routes = apiRoutes(Object.create(null) as MemoryService);
  const document = openApiDocument(routes, { version: '1.2.3' }) as {
    openapi: string;
    paths: Record<
      string,
      Record<
        string,
        {
          operationId: string;
          security?: unknown[];
          requestBody?: {
            content: Record<string, { schema: { properties: Record<string, unknown>; required?: string[] } }>;
          };
          responses: Record<string, unknown>;
          parameters: { name: string; in: string; required: boolean }[];
        }
      >
    >;
  };

  it('is OpenAPI 3.1 with one operation per route, unique ids, and no key needed only for health', () => {
    assert.equal(document.openapi, '3.1.0');
    const operations = Object.values(document.paths).flatMap((methods) => Object.values(methods));
    assert.equal(operations.length, routes.length);
    assert.equal(new Set(operations.map((operation) => operation.operationId)).size, routes.length);
    const open = operations
      .filter((operation) => operation.security?.length === 0)
      .map((operation) => operation.operationId);
    assert.deepEqual(open.sort(), ['health', 'liveness', 'readiness']);
    JSON.stringify(document); // serializable
  });

  it('describes requests with the schemas that validate them', () => {
    const search = document.paths['/v1/search']?.['post'];
    const schema = search?.requestBody?.content['application/json']?.schema;
    assert.deepEqual(schema?.required, ['userId', 'query']);
    for (const field of ['from', 'to', 'asOf', 'limit', 'includeSuperseded'])
      assert.ok(field in (schema?.properties ?? {}), field);
    for (const status of ['200', '400', '401', '403', '429'])
      assert.ok(status in (search?.responses ?? {}), status);
    const get = document.paths['/v1/memories/{id}']?.['get'];
    assert.deepEqual(
      get?.parameters.map((p) => [p.name, p.in, p.required]),
      [
        ['id', 'path', true],
        ['userId', 'query', true],
        ['tenantId', 'query', false],
      ],
    );
    assert.ok('200' in (document.paths['/v1/users/{userId}']?.['delete']?.responses ?? {}));
  });
});
