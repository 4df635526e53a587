import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MemoryService } from '../../services/app/memory-service.js';
import { apiRoutes } from '../../services/api/routes.js';
import { openApiDocument } from '../../services/api/openapi.js';
import { ListQuery, UsageQuery, UserPath } from '../../services/app/api-schemas.js';

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

  // A fuzzer draws "valid" values from the published patterns: each must accept exactly what the server does.
  it('publishes patterns that accept exactly what the schemas accept (ids, instants, page sizes)', () => {
    const parameter = (path: string, name: string) =>
      document.paths[path]?.['get']?.parameters.find((p) => p.name === name) as unknown as {
        schema: { pattern?: string; anyOf?: { type: string; pattern?: string; minimum?: number }[] };
      };
    const agree = (pattern: string, values: readonly string[], accepts: (value: string) => boolean) => {
      const regex = new RegExp(pattern, 'u');
      for (const value of values)
        assert.equal(regex.test(value), accepts(value), `${JSON.stringify(value)} against ${pattern}`);
    };

    const id = parameter('/v1/users/{userId}/memories', 'userId').schema.pattern ?? '';
    agree(
      id,
      ['u1', 'é³', 'a b', 'x'.repeat(200), 'x'.repeat(201), 'a/b#c', 'a?b', '€', ''],
      (value) => UserPath.safeParse({ userId: value }).success,
    );

    const instant = parameter('/v1/usage', 'since').schema.anyOf?.find((s) => s.type === 'string');
    const dates: string[] = [];
    for (const year of ['2023', '2024', '1900', '2000', '0000', '0100', '9999'])
      for (let month = 0; month <= 13; month++)
        for (let day = 0; day <= 32; day++)
          dates.push(`${year}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`);
    const times = [
      'T00:00',
      'T23:59:59',
      'T24:00',
      'T12:60',
      ' 08:30:15.123456789',
      'T08:30:15,5',
      'T08:30:61',
    ];
    const zones = ['Z', 'z', '+02:00', '-0530', '+18', '+18:59', '+19:00', '-12:60', '+2'];
    const instants = [
      ...dates,
      ...times.map((t) => `2024-02-29${t}`),
      ...zones.flatMap((z) => [`2024-05-08T13:56${z}`, `2024-05-08${z}`]),
      ...['0', '-0', '1715169360000', '8640000000000000', '8640000000000001', '-8640000000000000'],
      ...['0000000000000001', '9999999999999999', '12345678901234567', '1e3', ' 2024-01-01', '2024-01-01 '],
      ...['', 'yesterday', '2024-1-1', '20240101', '2024-01-01T', '2024-01-01T10'],
    ];
    agree(instant?.pattern ?? '', instants, (value) => UsageQuery.safeParse({ since: value }).success);
    const numeric = parameter('/v1/usage', 'since').schema.anyOf?.find((s) => s.type === 'integer');
    assert.equal(numeric?.minimum, -8.64e15);
    assert.equal(UsageQuery.safeParse({ since: -8.64e15 - 1 }).success, false);

    const limit = parameter('/v1/users/{userId}/memories', 'limit').schema.pattern ?? '';
    const sizes = Array.from({ length: 1001 }, (_, n) => [String(n), String(n).padStart(3, '0')]).flat();
    agree(limit, [...sizes, '0001', ''], (value) => ListQuery.safeParse({ limit: value }).success);
  });
});
