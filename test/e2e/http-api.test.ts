import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, tempDir, lastJsonLine } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';
import { apiClient, type ApiClient } from '../support/api-client.js';

describe('lightmem serve (HTTP API)', () => {
  const dir = tempDir('http');
  let server: Awaited<ReturnType<typeof startServer>>;
  let base = '';
  let client: ApiClient;

  before(async () => {
    server = await startServer(dir.path);
    base = server.base;
    client = apiClient(base, server.apiKey);
  });
  after(async () => {
    await server.stop();
    dir.remove();
  });

  const post = (path: string, body: unknown) => client.post(path, body);

  const conversation = [
    {
      userId: 'u1',
      conversationId: 'c1',
      turnId: '1',
      seq: 1,
      role: 'user',
      text: 'I just adopted a corgi named Waffles.',
      occurredAt: '2024-06-01T10:00:00+02:00',
    },
    {
      userId: 'u1',
      conversationId: 'c1',
      turnId: '2',
      seq: 2,
      role: 'assistant',
      text: 'Congratulations on Waffles!',
      occurredAt: '2024-06-01T10:00:05+02:00',
    },
  ];

  it('GET /healthz', async () => {
    const response = await fetch(`${base}/healthz`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as { status: string; ready: boolean; pipeline: string };
    assert.equal(body.status, 'ok');
    assert.equal(body.ready, true);
    assert.equal(body.pipeline, 'this process');
  });

  it('POST /v1/events then /v1/search finds the memory with its provenance; GET /v1/memories/:id', async () => {
    const ingest = await post('/v1/events?wait=true', { events: conversation, endSession: true });
    assert.equal(ingest.status, 202, JSON.stringify(ingest.json));
    assert.equal(ingest.json['accepted'], 2);
    assert.equal(ingest.json['sessionEnds'], 1);
    assert.equal(ingest.json['processed'], true);
    assert.equal(ingest.json['buffered'], 0);
    const search = await post('/v1/search', { userId: 'u1', query: 'what is the name of my dog corgi?' });
    assert.equal(search.status, 200);
    const results = search.json['results'] as {
      id: string;
      text: string;
      sourceTurnIds: string[];
      occurredAt: string;
    }[];
    assert.ok(results.length > 0);
    const top = results[0]!;
    assert.match(top.text, /Waffles/);
    assert.deepEqual(top.sourceTurnIds, ['1']);
    assert.equal(top.occurredAt, '2024-06-01T10:00:00+02:00');
    const got = await client.get(`/v1/memories/${top.id}?userId=u1`);
    assert.equal(got.status, 200);
    assert.equal(got.json['id'], top.id);
    const byUser = await client.get(`/v1/users/u1/memories/${top.id}`);
    assert.equal(byUser.json['id'], top.id);
    const listed = await client.get<{ items: { id: string }[]; nextCursor: string | null }>(
      '/v1/users/u1/memories',
    );
    assert.ok(listed.json.items.some((item) => item.id === top.id));
    const otherUser = await client.get(`/v1/memories/${top.id}?userId=u2`);
    assert.equal(otherUser.status, 404);
    const noUser = await client.get(`/v1/memories/${top.id}`);
    assert.equal(noUser.status, 400, 'a memory is read within its user');
    assert.equal((noUser.json['error'] as { field: string }).field, 'userId');
  });

  it('refuses requests without a valid key (401), and keys of another tenant see nothing (tenant from the key)', async () => {
    const anonymous = apiClient(base, null);
    const none = await anonymous.post('/v1/search', { userId: 'u1', query: 'Waffles' });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.equal((none.json['error'] as { code: string }).code, 'unauthorized');
    const forged = await apiClient(base, `lm_${'0'.repeat(16)}_${'A'.repeat(43)}`).get(
      '/v1/users/u1/memories',
    );
    assert.equal(forged.status, 401);

    const created = lastJsonLine(
      await runCliInProcess(['tenant', 'create', 'brand-b', '--json', '--data-dir', dir.path]),
    ) as {
      tenantId: string;
      apiKey: string;
    };
    assert.equal(created.tenantId, 'brand-b');
    const other = apiClient(base, created.apiKey);
    const search = await other.post<{ results: unknown[] }>('/v1/search', {
      userId: 'u1',
      query: 'Waffles corgi',
    });
    assert.equal(search.status, 200);
    assert.deepEqual(search.json.results, []);
    assert.equal((await other.get('/v1/users/u1/memories')).json['items']?.toString(), '');
    const named = await other.post('/v1/search', { tenantId: 'default', userId: 'u1', query: 'Waffles' });
    assert.equal(named.status, 403, 'naming another tenant is refused, not obeyed');
    const event = await other.post('/v1/events', { events: [{ ...conversation[0], tenantId: 'default' }] });
    assert.equal(event.status, 403);

    const readOnly = lastJsonLine(
      await runCliInProcess([
        'key',
        'create',
        '--tenant',
        'brand-b',
        '--scopes',
        'read',
        '--json',
        '--data-dir',
        dir.path,
      ]),
    ) as { apiKey: string; keyId: string };
    const reader = apiClient(base, readOnly.apiKey);
    assert.equal((await reader.post('/v1/search', { userId: 'u1', query: 'x' })).status, 200);
    assert.equal(
      (await reader.post('/v1/events', { events: conversation })).status,
      403,
      'read cannot write',
    );
    assert.equal((await reader.delete('/v1/users/u1')).status, 403, 'read cannot erase');
    const revoked = await runCliInProcess(['key', 'revoke', readOnly.keyId, '--data-dir', dir.path]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(
      (await reader.post('/v1/search', { userId: 'u1', query: 'x' })).status,
      401,
      'revoked at once',
    );
  });

  it('re-posting the same turns is a no-op', async () => {
    const again = await post('/v1/events?wait=true', { events: conversation, endSession: true });
    assert.equal(again.json['accepted'], 0);
    assert.equal(again.json['duplicates'], 2);
    // The same session end again (same last turn) is a duplicate too.
    assert.equal(again.json['sessionEnds'], 0);
    assert.equal(again.json['processed'], true);
  });

  it('errors are JSON naming the offending field', async () => {
    const badJson = await post('/v1/events', '{"events": [');
    assert.equal(badJson.status, 400);
    assert.deepEqual(Object.keys(badJson.json['error'] as object).sort(), [
      'code',
      'field',
      'message',
      'retryable',
    ]);

    const mixed = await post('/v1/events', {
      events: [
        { ...conversation[0], turnId: '9', role: 'robot' },
        { ...conversation[0], turnId: '10' },
      ],
    });
    assert.equal(mixed.status, 202);
    assert.equal(mixed.json['accepted'], 1);
    const rejected = mixed.json['rejected'] as { index: number; field: string }[];
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.index, 0);
    assert.equal(rejected[0]!.field, 'events.0.role');

    const noUser = await post('/v1/search', { query: 'dog' });
    assert.equal(noUser.status, 400);
    assert.equal((noUser.json['error'] as { field: string }).field, 'userId');

    const badLimit = await post('/v1/search', { userId: 'u1', query: 'dog', limit: 100000 });
    assert.equal((badLimit.json['error'] as { field: string }).field, 'limit');

    const missing = await client.get('/v1/nothing');
    assert.equal(missing.status, 404);
    const wrongMethod = await client.get('/v1/search');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
  });
});
