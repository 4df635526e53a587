import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { openRuntime } from '../support/embedded.js';
import { tempDir } from '../support/cli.js';
import { serveInProcess, type InProcessApi } from '../support/in-process-api.js';
import type { ApiClient } from '../support/api-client.js';
import { memoryLogger } from '../support/memory-logger.js';

/** A raw HTTP exchange on a socket: what Node's parser answers before any route runs. */
function rawExchange(base: string, request: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(request));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
    socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
  });
}

function jsonBodyOf(answer: string): { error: { code: string; message: string } } {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as {
    error: { code: string; message: string };
  };
}

/** What a hostile client found in the first API, each answered as it should be now. */
describe('HTTP API against a hostile client (embedded, in process)', () => {
  const dir = tempDir('hostile');
  const logger = memoryLogger();
  let runtime: EmbeddedRuntime;
  let api: InProcessApi;
  let client: ApiClient;

  before(async () => {
    runtime = await openRuntime(dir.path, {
      server: { rateLimit: { requestsPerSecond: 2, burst: 40 }, maxJsonDepth: 32 },
    });
    api = await serveInProcess(runtime, logger);
    client = await api.client('acme', ['read', 'write']);
  });
  after(async () => {
    await api.close();
    await runtime.close();
    dir.remove();
  });

  it('answers 400 (not 500) for %-malformed ids and for a body nested 10,000 deep', async () => {
    const malformed = await client.get('/v1/memories/%E0%A4%A?userId=u1');
    assert.equal(malformed.status, 400, JSON.stringify(malformed.json));
    const malformedUser = await client.get('/v1/users/%ZZ/memories');
    assert.equal(malformedUser.status, 400);
    const deep = `{"events":[${'['.repeat(10_000)}${']'.repeat(10_000)}]}`;
    const nested = await client.post('/v1/events', deep);
    assert.equal(nested.status, 400);
    assert.match((nested.json['error'] as { message: string }).message, /nested deeper than 32/);
    const deepEvent = await client.post('/v1/events', {
      events: [
        {
          userId: 'u',
          conversationId: 'c',
          turnId: '1',
          role: 'user',
          text: 'x',
          occurredAt: 0,
          metadata: JSON.parse(`${'{"a":'.repeat(20)}1${'}'.repeat(20)}`) as unknown,
        },
      ],
    });
    assert.equal(deepEvent.status, 202, 'nesting within the limit is decoded and judged by the schema');
    assert.equal((deepEvent.json['rejected'] as unknown[]).length, 1);
  });

  it('accepts only application/json (415) and refuses browser origins it was not told to allow (403)', async () => {
    const events = {
      events: [{ userId: 'u', conversationId: 'c', turnId: '1', role: 'user', text: 'hi', occurredAt: 0 }],
    };
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
    ]) {
      const response = await client.raw('/v1/events', {
        method: 'POST',
        headers: { 'content-type': type },
        body: JSON.stringify(events),
      });
      assert.equal(response.status, 415, type);
      assert.equal(
        ((await response.json()) as { error: { code: string } }).error.code,
        'unsupported_media_type',
      );
    }
    const crossSite = await client.raw('/v1/events', {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://evil.example' },
      body: JSON.stringify(events),
    });
    assert.equal(crossSite.status, 403);
    const otherTenant = await client.raw('/v1/usage', { headers: { 'x-lightmem-tenant': 'someone-else' } });
    assert.equal(otherTenant.status, 403, 'a header naming another tenant is refused');
    const ownTenant = await client.raw('/v1/usage', { headers: { 'x-lightmem-tenant': 'acme' } });
    assert.equal(ownTenant.status, 200);
  });

  it('answers 405 with Allow for a known path and a wrong method, 404 for an unknown path', async () => {
    const wrong = await client.raw('/v1/events', { method: 'PUT' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
    const erase = await client.raw('/v1/users/u1', { method: 'GET' });
    assert.equal(erase.status, 405);
    assert.equal(erase.headers.get('allow'), 'DELETE');
    assert.equal((await client.get('/v2/anything')).status, 404);
  });

  it("Node's own 431 and 400 answers are JSON", async () => {
    const huge = await rawExchange(
      api.base,
      `GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`,
    );
    assert.match(huge, /^HTTP\/1\.1 431 /);
    assert.equal(jsonBodyOf(huge).error.code, 'invalid_input');
    const garbage = await rawExchange(api.base, 'THIS IS NOT HTTP\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    assert.equal(jsonBodyOf(garbage).error.code, 'invalid_input');
  });

  it('refuses impossible dates in search (2024-02-30) naming the field', async () => {
    for (const field of ['from', 'to', 'asOf']) {
      const answer = await client.post('/v1/search', { userId: 'u1', query: 'x', [field]: '2024-02-30' });
      assert.equal(answer.status, 400, field);
      assert.equal((answer.json['error'] as { field: string }).field, field);
    }
    const fine = await client.post('/v1/search', {
      userId: 'u1',
      query: 'x',
      from: '2024-02-29',
      to: 1_800_000_000_000,
    });
    assert.equal(fine.status, 200);
  });

  it('a request the client aborts is not logged as an error', async () => {
    const controller = new AbortController();
    const body = new ReadableStream<Uint8Array>({
      start(stream) {
        stream.enqueue(new TextEncoder().encode('{"events": ['));
        setTimeout(() => controller.abort(), 50);
      },
    });
    await assert.rejects(
      client.raw('/v1/events', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: controller.signal,
        duplex: 'half',
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(
      logger.entries.filter((entry) => entry.level === 'error'),
      [],
    );
    assert.equal((await client.get('/livez')).status, 200);
  });

  it('limits each key: 429 with Retry-After when its bucket is empty, other keys unaffected', async () => {
    const noisy = await api.client('acme', ['read']);
    const statuses: number[] = [];
    for (let i = 0; i < 45; i++) statuses.push((await noisy.get('/v1/usage')).status);
    assert.ok(
      statuses.slice(0, 40).every((status) => status === 200),
      statuses.join(),
    );
    const limited = await noisy.get('/v1/usage');
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.equal((limited.json['error'] as { retryable: boolean }).retryable, true);
    assert.equal((await client.get('/v1/usage')).status, 200, 'another key has its own bucket');
  });
});
