import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { operatorOf } from '../../services/app/caller.js';
import type { MemoryService } from '../../services/app/memory-service.js';
import type { ReplayStatus } from '../../services/app/replays.js';
import { LightmemError } from '../../services/core/errors.js';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import { Topics } from '../../services/core/model/topics.js';
import { systemClock } from '../../services/core/ports/clock.js';
import type { MemoryStore } from '../../services/core/ports/memory-store.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { memoryServiceOf } from '../../services/runtime/memory-service-setup.js';
import { tempDir } from '../support/cli.js';
import { ingestEvents, openRuntime } from '../support/embedded.js';
import { serveInProcess, type InProcessApi } from '../support/in-process-api.js';

const day = (n: number) => new Date(Date.UTC(2026, 0, n, 9)).toISOString();

/** A conversation of a user with an assistant: user turns, each answered by the bot. */
function conversation(tenantId: string, userId: string, n: number, topics: readonly string[]) {
  return topics.flatMap((topic, i) => [
    {
      tenantId,
      userId,
      conversationId: `${userId}-c${n}`,
      sessionId: `${userId}-s${n}`,
      turnId: `${userId}-c${n}-t${2 * i}`,
      seq: 2 * i,
      role: 'user',
      speaker: userId,
      text: `I have been thinking about ${topic} a lot this week.`,
      occurredAt: day(n),
    },
    {
      tenantId,
      userId,
      conversationId: `${userId}-c${n}`,
      sessionId: `${userId}-s${n}`,
      turnId: `${userId}-c${n}-t${2 * i + 1}`,
      seq: 2 * i + 1,
      role: 'assistant',
      speaker: 'bot',
      text: `That is interesting; tell me more about ${topic}.`,
      occurredAt: day(n),
    },
  ]);
}

const acmeEvents = [
  ...conversation('acme', 'alice', 1, ['sailing', 'the violin', 'Lisbon']),
  ...conversation('acme', 'bob', 2, ['chess openings', 'sourdough']),
];
const globexEvents = conversation('globex', 'carol', 3, ['orchids', 'marathons']);

async function all(store: MemoryStore, tenantId: string, userId?: string): Promise<MemoryEntry[]> {
  const items: MemoryEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ scope: { tenantId, userId }, limit: 500, cursor });
    items.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return items;
}

async function waitBuilt(
  service: MemoryService,
  runtime: EmbeddedRuntime,
  version: string,
): Promise<ReplayStatus> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    await runtime.replay.markCaughtUp();
    const status = await service.replay(operatorOf('acme'), { version });
    if (status.builtAt !== null) return status;
    if (Date.now() > deadline) throw new Error(`${version} not built in time: ${JSON.stringify(status)}`);
    await sleep(50);
  }
}

async function rejectsWith(work: Promise<unknown>, code: LightmemError['code']): Promise<void> {
  await assert.rejects(work, (error: unknown) => error instanceof LightmemError && error.code === code);
}

describe('replay into a new pipeline version (embedded)', () => {
  const dir = tempDir('replay');
  // The serving process: owns the pipeline, answers the API.
  let live: EmbeddedRuntime;
  let api: InProcessApi;
  // Another process of the data dir with a changed configuration: only the user's turns are memorized.
  let replayer: EmbeddedRuntime;
  let service: MemoryService;
  const operator = operatorOf('acme');

  before(async () => {
    live = await openRuntime(dir.path);
    await ingestEvents(live, [...acmeEvents, ...globexEvents]);
    api = await serveInProcess(live);
    replayer = await openRuntime(dir.path, { summarizer: { memorizeRoles: ['user'] } });
    service = memoryServiceOf(replayer, systemClock);
  });

  after(async () => {
    await api.close();
    await replayer.close();
    await live.close();
    dir.remove();
  });

  it('builds v2 with the changed setting beside v1, and the diff says exactly what changed', async () => {
    const v1Acme = await all(live.firstStore, 'acme');
    assert.equal(v1Acme.length, acmeEvents.length, 'v1 memorizes every turn');
    const started = await service.startReplay(operator, { tenants: null });
    assert.equal(started.version, 'v2');
    assert.equal(started.builtAt, null);
    // Starting again while it builds resumes the same version.
    assert.equal((await service.startReplay(operator, { tenants: null })).version, 'v2');
    const built = await waitBuilt(service, live, 'v2');
    assert.equal(built.copied, built.rawRecords);
    assert.deepEqual(built.serves, [], 'v1 still serves every read');

    const diff = await service.diffReplay(operator, { version: 'v2' });
    const botTurns = v1Acme.filter((m) => m.speaker === 'bot').length;
    const globexV1 = await all(live.firstStore, 'globex');
    assert.deepEqual(diff.tenants, ['acme', 'globex']);
    assert.equal(diff.from, 'v1');
    assert.equal(diff.removed, botTurns + globexV1.filter((m) => m.speaker === 'bot').length);
    assert.equal(diff.added, 0);
    assert.equal(diff.changed, 0);
    assert.equal(diff.unchanged, diff.before - diff.removed);
    assert.ok(diff.samples.removed.length > 0);
    assert.ok(
      diff.samples.removed.every((s) => s.sourceTurnIds.every((id) => /t[135]$/.test(id))),
      'bot turns',
    );
  });

  it("a built version's log drops the intermediate records its stages consumed and keeps its raw copy", async () => {
    const v2 = (await live.versions.later()).find((parts) => parts.version.name === 'v2');
    assert.ok(v2 !== undefined);
    const raw = await v2.log.usage(Topics.raw);
    const held = async (): Promise<number> => {
      let records = 0;
      for (const topic of [Topics.compressed, Topics.segments, Topics.memories])
        records += (await v2.log.usage(topic)).records;
      return records;
    };
    const before = await held();
    assert.ok(before > 0, 'v2 derived records not pruned yet');
    const job = live.versions
      .jobs({ idleMs: 60_000, intervalMs: 60_000, consolidationMs: null, pruneMs: 60_000 })
      .find((candidate) => candidate.name === 'versions-log-pruning');
    assert.ok(job !== undefined);
    await job.run({ now: Date.now(), signal: new AbortController().signal });
    assert.ok((await held()) < before, `${await held()} of ${before} intermediate records left`);
    assert.deepEqual(await v2.log.usage(Topics.raw), raw, 'the raw copy stays whole');
    // Pruning is off with sqlite.pruneConsumedMs 0: no job.
    assert.equal(
      live.versions
        .jobs({ idleMs: 60_000, intervalMs: 60_000, consolidationMs: null, pruneMs: null })
        .some((candidate) => candidate.name === 'versions-log-pruning'),
      false,
    );
  });

  it('switches reads atomically: no search fails during the switch, and reads come from v2 after it', async () => {
    const alice = await api.client('acme', ['read']);
    // Each searching loop has a key of its own, and keeps under the per-key rate limit (50/s).
    const clients = await Promise.all([0, 1, 2].map(() => api.client('acme', ['read'])));
    const askWith = (client: typeof alice) =>
      client.post<{ results: { speaker: string }[] }>('/v1/search', {
        query: 'sailing',
        userId: 'alice',
        limit: 20,
      });
    const ask = () =>
      alice.post<{ results: { speaker: string }[] }>('/v1/search', {
        query: 'sailing',
        userId: 'alice',
        limit: 20,
      });
    const before = await ask();
    assert.ok(
      before.json.results.some((r) => r.speaker === 'bot'),
      'v1 answers with the bot turns',
    );
    const statuses: number[] = [];
    const stop = new AbortController();
    const hammer = Promise.all(
      clients.map(async (client) => {
        while (!stop.signal.aborted) {
          statuses.push((await askWith(client)).status);
          await sleep(25);
        }
      }),
    );
    await sleep(100);
    await service.switchReplay(operator, { version: 'v2', tenants: null });
    await sleep(600); // past the serving process's refresh of the routes
    stop.abort();
    await hammer;
    assert.ok(statuses.length > 10, `searched ${statuses.length} times`);
    assert.deepEqual([...new Set(statuses)], [200]);
    const afterSwitch = await ask();
    assert.ok(afterSwitch.json.results.length > 0);
    assert.ok(
      afterSwitch.json.results.every((r) => r.speaker !== 'bot'),
      'v2 memorized only the user',
    );
    assert.deepEqual((await service.replay(operator, { version: 'v2' })).serves, ['*']);
  });

  it('new turns after the switch reach the serving version', async () => {
    await ingestEvents(live, conversation('acme', 'alice', 4, ['kayaks']));
    const v2 = await live.versions.storeOf('v2');
    const kayaks = (await all(v2, 'acme', 'alice')).filter((m) => m.text.includes('kayaks'));
    assert.equal(kayaks.length, 1, 'the user turn only');
  });

  it('lightmem consolidate works on the version that serves the tenant (v2 after the switch)', async () => {
    const v2 = await live.versions.storeOf('v2');
    const scope = { tenantId: 'acme', userId: 'alice' };
    const pendingIn = async (store: MemoryStore) =>
      (await store.pendingConsolidation(scope, 1_000)).map((m) => m.id).sort();
    const [inV1, inV2] = [await pendingIn(live.firstStore), await pendingIn(v2)];
    assert.notDeepEqual(inV1, inV2, 'the versions hold different memories');
    const run = await live.consolidate(scope, { dryRun: true });
    // A dry run decides over the pending memories of v2, not v1's (ids name their version's settings).
    assert.equal(run.sources, inV2.length);
    for (const decision of run.decisions) {
      for (const id of [...decision.sourceIds, ...decision.targetIds]) {
        assert.ok(!inV1.includes(id) || inV2.includes(id), `decided over v1's ${id}`);
      }
    }
  });

  it('erasure reaches every version, and a later replay does not bring the user back', async () => {
    const receipt = await service.eraseUser(operator, { userId: 'bob' });
    const store = receipt.removed.find((r) => r.where === 'memory-store');
    // v1 held bob's 4 turns, v2 his 2 user turns.
    assert.equal(store?.count, 6);
    const v2 = live.versions;
    assert.equal((await all(await v2.storeOf('v2'), 'acme', 'bob')).length, 0);
    const parts = (await v2.later()).find((p) => p.version.name === 'v2');
    assert.ok(parts !== undefined);
    const raw = await parts.log.read(Topics.raw, 0, 10_000);
    assert.equal(
      raw.filter((r) => r.value.userId === 'bob').length,
      0,
      "bob's raw turns are gone from v2's log",
    );

    const v3 = await service.startReplay(operator, { tenants: ['acme'] });
    assert.equal(v3.version, 'v3');
    assert.deepEqual(v3.tenants, ['acme']);
    await waitBuilt(service, live, 'v3');
    const v3Store = await live.versions.storeOf('v3');
    assert.equal((await all(v3Store, 'acme', 'bob')).length, 0, 'bob never comes back');
    assert.ok((await all(v3Store, 'acme', 'alice')).length > 0);
    assert.equal((await all(v3Store, 'globex')).length, 0, 'a replay of one tenant derives only that tenant');
  });

  it('a tenant key sees, switches and drops only versions of its own tenant', async () => {
    const globexAdmin = await api.client('globex', ['admin']);
    const acmeAdmin = await api.client('acme', ['admin']);
    const acmeReader = await api.client('acme', ['read']);

    const started = await globexAdmin.post<ReplayStatus>('/v1/replays', {});
    assert.equal(started.status, 202);
    assert.deepEqual(started.json.tenants, ['globex']);
    const globexVersion = started.json.version;
    assert.equal(
      (await globexAdmin.post('/v1/replays', { tenantId: 'acme' })).status,
      403,
      'naming another tenant is refused',
    );
    assert.equal((await acmeReader.post('/v1/replays', {})).status, 403, 'a read key cannot replay');
    await waitBuilt(service, live, globexVersion);

    const acmeList = await acmeAdmin.get<{ versions: ReplayStatus[] }>('/v1/replays');
    assert.ok(
      !acmeList.json.versions.some((v) => v.version === globexVersion),
      "acme does not see globex's version",
    );
    for (const answer of [
      await acmeAdmin.get(`/v1/replays/${globexVersion}`),
      await acmeAdmin.get(`/v1/replays/${globexVersion}/diff`),
      await acmeAdmin.post(`/v1/replays/${globexVersion}/switch`, {}),
      await acmeAdmin.delete(`/v1/replays/${globexVersion}`),
    ]) {
      assert.equal(answer.status, 404);
    }
    // globex switches itself; acme's reads stay where they were.
    const switched = await globexAdmin.post<ReplayStatus>(`/v1/replays/${globexVersion}/switch`, {});
    assert.equal(switched.status, 200);
    assert.deepEqual(switched.json.serves, ['globex']);
    const routes = await live.versions.registry.routes();
    assert.equal(routes.tenants['globex'], globexVersion);
    assert.equal(routes.all, 'v2');
    // v2 derives every tenant: no tenant's key may drop it, only the operator.
    assert.equal((await acmeAdmin.delete('/v1/replays/v2')).status, 403);
    assert.equal((await globexAdmin.delete('/v1/replays/v2')).status, 403);
  });

  it('drop deletes a version that serves no reads and refuses one that does', async () => {
    await rejectsWith(service.dropReplay(operator, { version: 'v2' }), 'conflict');
    const dropped = await service.dropReplay(operator, { version: 'v1' });
    assert.notEqual(dropped.droppedAt, null);
    assert.equal((await all(live.firstStore, 'acme')).length, 0, "v1's memories are deleted");
    assert.equal((await live.log.read(Topics.memories, 0, 10)).length, 0, "v1's derived topics are emptied");
    assert.ok((await live.log.read(Topics.raw, 0, 10)).length > 0, 'the raw log stays');
    await service.dropReplay(operator, { version: 'v3' });
    // The pipeline owner deletes them once it stopped running v3 (it looks for changes every second).
    const deadline = Date.now() + 10_000;
    while (existsSync(join(dir.path, 'versions', 'v3')) && Date.now() < deadline) await sleep(100);
    assert.equal(existsSync(join(dir.path, 'versions', 'v3')), false, "v3's files are deleted");
    await rejectsWith(service.switchReplay(operator, { version: 'v3', tenants: null }), 'conflict');
    const listed = (await service.replays(operator)).map((v) => v.version);
    assert.ok(!listed.includes('v1') && !listed.includes('v3') && listed.includes('v2'), listed.join());
  });
});

describe('replay --since: sessions active since then are derived again, the others carried over', () => {
  const dir = tempDir('replay-since');
  let live: EmbeddedRuntime;
  let replayer: EmbeddedRuntime;
  let service: MemoryService;
  const operator = operatorOf('acme');

  before(async () => {
    live = await openRuntime(dir.path);
    await ingestEvents(live, [
      ...conversation('acme', 'alice', 1, ['sailing', 'the violin']),
      ...conversation('acme', 'alice', 5, ['kites', 'tea']),
    ]);
    replayer = await openRuntime(dir.path, { summarizer: { memorizeRoles: ['user'] } });
    service = memoryServiceOf(replayer, systemClock);
  });

  after(async () => {
    await replayer.close();
    await live.close();
    dir.remove();
  });

  it('keeps day 1 as it was (ids and all), derives day 5 with the new setting', async () => {
    const v1 = await all(live.firstStore, 'acme', 'alice');
    const started = await service.startReplay(operator, { tenants: ['acme'], since: Date.parse(day(3)) });
    assert.equal(started.since, day(3));
    await waitBuilt(service, live, started.version);
    const v2 = await all(await live.versions.storeOf(started.version), 'acme', 'alice');
    const day1 = (m: MemoryEntry) => m.conversationId === 'alice-c1';
    assert.deepEqual(
      v2
        .filter(day1)
        .map((m) => m.id)
        .sort(),
      v1
        .filter(day1)
        .map((m) => m.id)
        .sort(),
      'day 1 carried over as it was, bot turns included',
    );
    const day5 = v2.filter((m) => !day1(m));
    assert.equal(day5.length, 2, 'day 5: the two user turns only');
    assert.ok(day5.every((m) => m.speaker === 'alice'));
    const diff = await service.diffReplay(operator, { version: started.version });
    assert.equal(diff.removed, 2, "day 5's bot turns");
    assert.equal(diff.added + diff.changed, 0);
  });
});
