import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kafkaTopic, stateTopic, type TopicLayout } from '../../services/adapters/kafka/kafka-topics.js';
import { Topics, type TopicName } from '../../services/core/model/topics.js';
import { lastJsonLine, runCli, tempDir } from '../support/cli.js';
import { apiClient, type ApiClient } from '../support/api-client.js';
import { fetchModel } from './support/models.js';
import { deleteTopics, openKafkaLog, testKafka } from './support/servers.js';
import { serve, type RunningServer } from './support/serve.js';
import { readableRecords } from './support/sealed-records.js';
import {
  distributedConfig,
  modelEnv,
  startStages,
  stopStages,
  waitUntil,
  writeConfig,
  type Stage,
  type StageProcess,
} from './support/distributed.js';

interface Receipt {
  tenantId: string;
  userId: string;
  erasedAt: string;
  removed: { where: string; count: number }[];
  tombstone: boolean;
}

interface SearchAnswer {
  results: { id: string; text: string; sourceTurnIds: string[] }[];
}

/** One conversation of one user, ended (so the pipeline makes its memories at once). */
function conversation(userId: string, conversationId: string, lines: readonly string[], day = 1) {
  return {
    events: lines.map((text, index) => ({
      userId,
      conversationId,
      turnId: `${conversationId}-${index + 1}`,
      seq: index + 1,
      role: index % 2 === 0 ? 'user' : 'assistant',
      text,
      occurredAt: `2024-03-${String(day).padStart(2, '0')}T10:00:${String(index).padStart(2, '0')}Z`,
    })),
    endSession: true,
  };
}

/**
 * Tenants, keys, isolation and erasure in distributed mode: `lightmem serve` on Kafka, the registry and
 * Elasticsearch, the five stages as processes, tenants and keys in the shared directory (an Elasticsearch
 * index). Erasure there is crypto-shredding: the test reads every topic and changelog as a new process would.
 */
describe('tenants, isolation and erasure in distributed mode (real Kafka, registry, Elasticsearch)', () => {
  const dir = tempDir('distributed-tenants');
  const config = distributedConfig('tenants');
  const layout: TopicLayout = { prefix: config.kafka!.topicPrefix!, partitions: 3, replicationFactor: 1 };
  const file = writeConfig(dir.path, 'distributed', config);
  let stages: Map<Stage, StageProcess> = new Map();
  let server: RunningServer | null = null;
  let a: ApiClient;
  let b: ApiClient;
  let tenantAKey = '';
  let tenantBKey = '';
  let readOnlyA: { client: ApiClient; keyId: string };
  /** Memory ids of brand-b's user u1 (the same user id as brand-a's). */
  let brandBIds: string[] = [];

  const cli = async (...args: string[]) =>
    lastJsonLine(await runCli([...args, '--config', file], modelEnv()));
  const search = async (client: ApiClient, userId: string, query: string) => {
    const answer = await client.post<SearchAnswer>('/v1/search', { userId, query, limit: 20 });
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    return answer.json.results;
  };
  const ingest = async (client: ApiClient, body: unknown) => {
    const answer = await client.post('/v1/events?wait=true', body);
    assert.equal(answer.status, 202, JSON.stringify(answer.json));
    return answer.json;
  };

  before(async () => {
    await fetchModel();
    const init = await runCli(['admin', 'init', '--config', file], modelEnv());
    assert.equal(init.code, 0, init.stderr);
    const tenantA = (await cli('tenant', 'create', 'brand-a', '--json')) as { apiKey: string };
    const tenantB = (await cli('tenant', 'create', 'brand-b', '--json')) as { apiKey: string };
    const reader = (await cli('key', 'create', '--tenant', 'brand-a', '--scopes', 'read', '--json')) as {
      apiKey: string;
      keyId: string;
    };
    stages = await startStages(file, modelEnv());
    server = await serve(join(dir.path, 'serve'), modelEnv(), 120_000, 60_000, ['--config', file]);
    tenantAKey = tenantA.apiKey;
    tenantBKey = tenantB.apiKey;
    a = apiClient(server.base, tenantA.apiKey);
    b = apiClient(server.base, tenantB.apiKey);
    readOnlyA = { client: apiClient(server.base, reader.apiKey), keyId: reader.keyId };

    await ingest(
      a,
      conversation('u1', 'a-c1', [
        'My pet axolotl is called Quillfeather and lives in a tank by the window.',
        'Quillfeather sounds lovely. How old is the axolotl?',
        'Quillfeather turned three in January; I feed the axolotl bloodworms.',
        'Bloodworms are a good choice for an axolotl.',
      ]),
    );
    await ingest(
      a,
      conversation('u2', 'a-c2', [
        'My sister breeds Icelandic horses on a farm near Reykjavik.',
        'That must be beautiful. How many horses does she have?',
        'She has eleven Icelandic horses and a foal born in May.',
        'Eleven horses is a lot of work.',
      ]),
    );
    await ingest(
      b,
      conversation('u1', 'b-c1', [
        'I collect antique barometers, mostly from Bavaria.',
        'Barometers are fascinating instruments. Which is your oldest?',
        'My oldest Bavarian barometer is from 1791 and still works.',
        'A working barometer from 1791 is remarkable.',
      ]),
    );
    await ingest(
      b,
      conversation('u9', 'b-c9', [
        'I am training for a marathon in Lisbon next spring.',
        'Good luck with the Lisbon marathon!',
      ]),
    );
    // `wait=true` waits for the log; the memories are searchable once Elasticsearch refreshed.
    await waitUntil(
      async () => (await search(a, 'u1', 'axolotl Quillfeather')).length > 0,
      'brand-a u1',
      120_000,
    );
    await waitUntil(
      async () => (await search(b, 'u1', 'barometer Bavaria')).length > 0,
      'brand-b u1',
      120_000,
    );
    brandBIds = (await search(b, 'u1', 'barometer Bavaria 1791')).map((result) => result.id);
  });

  after(async () => {
    await server?.stop().catch(() => undefined);
    await stopStages(stages).catch(() => undefined);
    await deleteTopics(layout).catch(() => undefined);
    dir.remove();
  });

  it("isolation: brand-a's keys cannot read, search, list, get, see history of or erase brand-b's data", async () => {
    assert.ok(brandBIds.length > 0);
    // The same user id in two tenants: each key sees its own tenant's user only, whatever the query.
    for (const query of ['barometer Bavaria 1791', 'antique barometers', 'marathon Lisbon', '*', '']) {
      const seen = query === '' ? [] : await search(a, 'u1', query);
      assert.ok(!seen.some((result) => /barometer|Bavaria/i.test(result.text)), `query ${query}`);
      assert.ok(!seen.some((result) => brandBIds.includes(result.id)));
    }
    assert.deepEqual(await search(a, 'u9', 'marathon Lisbon'), [], "brand-b's u9 does not exist for brand-a");
    const named = await a.post('/v1/search', { tenantId: 'brand-b', userId: 'u1', query: 'barometer' });
    assert.equal(named.status, 403, 'naming another tenant is refused');
    const posted = await a.post('/v1/events', {
      events: [{ ...conversation('u1', 'x', ['hi']).events[0], tenantId: 'brand-b' }],
    });
    assert.equal(posted.status, 403);
    for (const id of brandBIds) {
      assert.equal((await a.get(`/v1/memories/${id}?userId=u1`)).status, 404);
      assert.equal((await a.get(`/v1/users/u1/memories/${id}`)).status, 404);
      assert.equal((await a.get(`/v1/memories/${id}/history?userId=u1`)).status, 404);
    }
    const listed = await a.get<{ items: { id: string; text: string }[] }>('/v1/users/u1/memories');
    assert.equal(listed.status, 200);
    assert.ok(listed.json.items.length > 0, "brand-a's own u1 is listed");
    assert.ok(!listed.json.items.some((item) => brandBIds.includes(item.id) || /barometer/i.test(item.text)));
    // Erasing "u9" with brand-a's key erases brand-a's u9 (nobody): brand-b's u9 stays.
    const erased = await a.delete<Receipt>('/v1/users/u9');
    assert.equal(erased.status, 200, JSON.stringify(erased.json));
    assert.equal(erased.json.tenantId, 'brand-a');
    assert.equal(erased.json.removed.find((entry) => entry.where === 'memory-store')?.count, 0);
    assert.ok((await search(b, 'u9', 'marathon Lisbon')).length > 0, "brand-b's u9 is untouched");
    // Replaying another tenant is refused.
    assert.equal((await a.post('/v1/replays', { tenantId: 'brand-b' })).status, 403);

    // A read key reads, and cannot write or erase; no key, a forged key and a revoked key are refused.
    const reader = readOnlyA.client;
    assert.equal((await reader.post('/v1/search', { userId: 'u1', query: 'axolotl' })).status, 200);
    assert.equal((await reader.post('/v1/events', conversation('u1', 'r', ['hello']))).status, 403);
    assert.equal((await reader.delete('/v1/users/u1')).status, 403);
    assert.equal(
      (await apiClient(server!.base, null).post('/v1/search', { userId: 'u1', query: 'x' })).status,
      401,
    );
    const revoked = await runCli(['key', 'revoke', readOnlyA.keyId, '--config', file], modelEnv());
    assert.equal(revoked.code, 0, revoked.stderr);
    const started = Date.now();
    await waitUntil(
      async () => (await reader.post('/v1/search', { userId: 'u1', query: 'x' })).status === 401,
      'the revoked key to be refused',
      5_000,
    );
    console.log(`# revoked key refused ${Date.now() - started} ms after revoke returned`);
  });

  it('erasure: DELETE /v1/users/u1 shreds every record and state value of the user, and keeps everyone else', async () => {
    const before = await search(a, 'u1', 'axolotl Quillfeather bloodworms');
    assert.ok(before.length > 0);
    const started = Date.now();
    const answer = await a.delete<Receipt>('/v1/users/u1');
    const ms = Date.now() - started;
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    const receipt = answer.json;
    console.log(`# distributed erasure in ${ms} ms: ${JSON.stringify(receipt.removed)}`);
    assert.equal(receipt.tenantId, 'brand-a');
    assert.equal(receipt.userId, 'u1');
    assert.equal(receipt.tombstone, true);
    const count = (where: string) => receipt.removed.find((entry) => entry.where === where)?.count;
    assert.ok((count('memory-store') ?? 0) >= before.length, 'the memories were removed');
    assert.ok((count('event-log:user-keys') ?? 0) >= 1, "the user's keys were destroyed");
    assert.ok(
      receipt.removed.some((entry) => entry.where.startsWith('stage-state:')),
      'every stage state was searched',
    );

    // Search, get, list: nothing of the user.
    assert.deepEqual(await search(a, 'u1', 'axolotl Quillfeather bloodworms'), []);
    for (const result of before) {
      assert.equal((await a.get(`/v1/memories/${result.id}?userId=u1`)).status, 404);
    }
    const listed = await a.get<{ items: unknown[] }>('/v1/users/u1/memories');
    assert.deepEqual(listed.json.items, []);

    // Every topic and every stage's changelog, read as a process started now reads them.
    const kafka = testKafka('lightmem-test-topics');
    const admin = kafka.admin();
    await admin.connect();
    const changelogs = (await admin.listTopics()).filter((topic) => topic.startsWith(stateTopic(layout, '')));
    await admin.disconnect();
    assert.ok(changelogs.length >= 3, `stage changelogs: ${changelogs.join(', ')}`);
    const topics = [
      ...(Object.values(Topics) as TopicName[]).map((topic) => kafkaTopic(layout, topic)),
      ...changelogs,
    ];
    let shredded = 0;
    const readableWords = new Set<string>();
    for (const topic of topics) {
      for (const record of await readableRecords(layout, topic)) {
        const text = record.value?.toString('utf8') ?? '';
        assert.ok(!/Quillfeather|axolotl/i.test(text), `${topic}: a readable record of the erased user`);
        assert.ok(
          !/Quillfeather|axolotl/i.test(record.stored?.toString('utf8') ?? ''),
          `${topic}: plaintext on the broker`,
        );
        if (record.sealedFor?.tenantId === 'brand-a' && record.sealedFor.userId === 'u1') {
          assert.equal(record.value, null, `${topic}: sealed for the erased user, yet readable`);
          shredded++;
        }
        for (const word of ['Reykjavik', 'barometer', 'Lisbon'])
          if (text.includes(word)) readableWords.add(word);
      }
    }
    assert.ok(shredded > 0, 'the erased user had records, now unreadable');
    assert.deepEqual(
      [...readableWords].sort(),
      ['Lisbon', 'Reykjavik', 'barometer'],
      'other users stay readable',
    );

    // Everyone else stays: brand-a's u2, brand-b's u1 (same user id) and u9.
    assert.ok((await search(a, 'u2', 'Icelandic horses')).length > 0);
    assert.ok((await search(b, 'u1', 'barometer Bavaria')).length > 0);
    assert.ok((await search(b, 'u9', 'marathon Lisbon')).length > 0);

    // The tombstone holds; erasing again finds nothing left.
    const again = await a.delete<Receipt>('/v1/users/u1');
    assert.equal(again.status, 200);
    assert.ok(
      again.json.removed.every((entry) => entry.count === 0),
      JSON.stringify(again.json.removed),
    );

    // The user starts over: new turns are sealed with a new key and become memories; the old ones stay gone.
    await ingest(
      a,
      conversation(
        'u1',
        'a-c3',
        [
          'I started learning the cello this winter.',
          'The cello is a wonderful instrument.',
          'My cello teacher says I practise too little.',
          'Practising a little every day helps.',
        ],
        20,
      ),
    );
    await waitUntil(
      async () => (await search(a, 'u1', 'cello teacher')).length > 0,
      'the new memories',
      120_000,
    );
    const now = await search(a, 'u1', 'axolotl Quillfeather');
    assert.ok(!now.some((result) => /axolotl|Quillfeather/i.test(result.text)), JSON.stringify(now));
  });

  it('an erasure a crash interrupted after the log step is finished by the next server to start', async () => {
    assert.ok((await search(a, 'u2', 'Icelandic horses')).length > 0);
    // Step 1 of an erasure (keys destroyed, tombstone left without completedAt), then the "crash".
    const log = await openKafkaLog(layout);
    try {
      await log.eraseUser('brand-a', 'u2', Date.now());
      const [tombstone] = await log.erasures('brand-a').then((all) => all.filter((t) => t.userId === 'u2'));
      assert.equal(tombstone?.completedAt, null);
    } finally {
      await log.close();
    }
    assert.ok((await search(a, 'u2', 'Icelandic horses')).length > 0, 'the store is not erased yet');
    await server?.stop();
    server = await serve(join(dir.path, 'serve'), modelEnv(), 120_000, 60_000, ['--config', file]);
    a = apiClient(server.base, tenantAKey);
    b = apiClient(server.base, tenantBKey);
    assert.deepEqual(await search(a, 'u2', 'Icelandic horses'), [], 'finished before the API answered');
    const check = await openKafkaLog(layout);
    try {
      const [tombstone] = (await check.erasures('brand-a')).filter((t) => t.userId === 'u2');
      assert.ok(tombstone?.completedAt !== null && tombstone?.receipt !== null, JSON.stringify(tombstone));
    } finally {
      await check.close();
    }
    assert.ok((await search(b, 'u1', 'barometer Bavaria')).length > 0, 'brand-b untouched');
  });
});
