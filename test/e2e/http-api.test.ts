import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, tempDir } from '../support/cli.js';

describe('lightmem serve (HTTP API)', () => {
  const dir = tempDir('http');
  let server: Awaited<ReturnType<typeof startServer>>;
  let base = '';

  before(async () => {
    server = await startServer(dir.path);
    base = server.base;
  });
  after(async () => {
    await server.stop();
    dir.remove();
  });

  const post = async (
    path: string,
    body: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }> => {
    const response = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };

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
    const got = await fetch(`${base}/v1/memories/${top.id}?userId=u1`);
    assert.equal(got.status, 200);
    assert.equal(((await got.json()) as { id: string }).id, top.id);
    const otherUser = await fetch(`${base}/v1/memories/${top.id}?userId=u2`);
    assert.equal(otherUser.status, 404);
    const otherTenant = await fetch(`${base}/v1/memories/${top.id}`, {
      headers: { 'x-lightmem-tenant': 'someone-else' },
    });
    assert.equal(otherTenant.status, 404);
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

    const missing = await fetch(`${base}/v1/nothing`);
    assert.equal(missing.status, 404);
  });
});
