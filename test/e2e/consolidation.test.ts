import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Topics } from '../../services/core/model/topics.js';
import { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { loadConfig } from '../../services/runtime/load-config.js';
import { systemClock } from '../../services/core/ports/clock.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { ingestEvents, openRuntime } from '../support/embedded.js';
import { tempDir } from '../support/cli.js';
import { serveInProcess } from '../support/in-process-api.js';
import { stderrLogger } from '../../services/runtime/stderr-logger.js';
import { failingCalls, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

const day = (n: number, hour = 9) => new Date(Date.UTC(2026, 0, n, hour)).toISOString();

function turn(tenantId: string, session: number, turnId: string, text: string, seq: number) {
  return {
    tenantId,
    userId: 'u1',
    conversationId: `chat-${session}`,
    sessionId: `s${session}`,
    turnId,
    seq,
    role: 'user',
    speaker: 'Maya',
    text,
    occurredAt: day(session),
  };
}

describe('sleep-time consolidation, embedded (LLM-free policy)', () => {
  const dir = tempDir('consolidation');
  let runtime: EmbeddedRuntime;
  const duplicate = 'I adopted a greyhound named Pixel last spring and she loves the beach.';

  before(async () => {
    runtime = await openRuntime(dir.path, { consolidation: { enabled: false } }, new HashingEmbedder(64));
    const events = ['acme', 'other'].flatMap((tenant) => [
      turn(tenant, 1, 'm1', duplicate, 1),
      turn(tenant, 1, 'm2', 'My sister works as a nurse in Porto.', 2),
      turn(tenant, 3, 'm3', duplicate, 1),
      turn(tenant, 5, 'm4', 'We booked a cabin in the Alps for February.', 1),
    ]);
    await ingestEvents(runtime, events);
  });
  after(async () => {
    await runtime.close();
    dir.remove();
  });

  const acme = { tenantId: 'acme', userId: 'u1' };
  const search = async (tenantId: string, extra: { asOf?: number; includeSuperseded?: boolean } = {}) =>
    runtime.store.search({
      scope: { tenantId, userId: 'u1' },
      text: 'greyhound Pixel beach',
      limit: 10,
      ...extra,
    });

  it('merges the near-duplicates into one version citing both turns, and keeps the old versions', async () => {
    const before = await search('acme');
    assert.equal(before.length, 2, 'two copies before');
    const summary = await runtime.consolidate(acme, { dryRun: false });
    assert.equal(summary.counts.merge, 1);
    assert.equal(summary.counts.update + summary.counts.supersede, 0);
    assert.equal(summary.sources, 4);

    const hits = await search('acme');
    assert.equal(hits.length, 1, 'one current version');
    const merged = hits[0]?.memory;
    assert.ok(merged !== undefined);
    assert.deepEqual(
      [...merged.sourceTurnIds].sort(),
      [...new Set(before.flatMap((hit) => hit.memory.sourceTurnIds))].sort(),
    );
    assert.equal((await search('acme', { includeSuperseded: true })).length, 3);
    const history = await runtime.store.history(acme, before[0]?.memory.id ?? '');
    assert.equal(history?.versions.length, 3);
    assert.deepEqual(
      history?.ops.map((recorded) => [recorded.op.op, recorded.outcome]),
      [['update', 'applied']],
    );
    // As of the day between the two sessions, only the first copy was known.
    const asOf = await search('acme', { asOf: Date.parse(day(2)) });
    assert.deepEqual(
      asOf.map((hit) => hit.memory.id),
      [before.find((hit) => hit.memory.occurredAt === Date.parse(day(1)))?.memory.id],
    );
  });

  it('serves the history and as-of search over HTTP', async () => {
    const api = await serveInProcess(runtime, stderrLogger('warn'));
    try {
      const client = await api.client('acme', ['read']);
      const all = await search('acme', { includeSuperseded: true });
      const old = all.find((hit) => hit.memory.supersededBy !== null)?.memory;
      assert.ok(old !== undefined);
      const history = await client.get<{
        versions: {
          id: string;
          current: boolean;
          madeBy: string | null;
          closedBy: string | null;
          sourceTurnIds: string[];
        }[];
        decisions: { op: string; decidedBy: string; reason: string }[];
      }>(`/v1/memories/${encodeURIComponent(old.id)}/history?userId=u1`);
      assert.equal(history.status, 200);
      const view = history.json;
      assert.equal(view.versions.length, 3);
      assert.equal(view.versions.filter((v) => v.current).length, 1);
      const merged = view.versions.find((v) => v.current);
      assert.ok(merged?.madeBy !== null && merged?.sourceTurnIds.length === 2);
      assert.deepEqual(
        view.decisions.map((d) => [d.op, d.decidedBy]),
        [['update', 'near-duplicate@0.97']],
      );
      const other = await (
        await api.client('other', ['read'])
      ).get(`/v1/users/u1/memories/${encodeURIComponent(old.id)}/history`);
      assert.equal(other.status, 404, 'another tenant does not see it');

      const asOf = await client.post<{ results: { id: string; validTo: string | null }[] }>('/v1/search', {
        userId: 'u1',
        query: 'greyhound Pixel beach',
        asOf: day(2),
      });
      const found = asOf.json;
      assert.equal(found.results.length, 1);
      assert.notEqual(found.results[0]?.validTo, null, 'the version valid then, closed since');
    } finally {
      await api.close();
    }
  });

  it('changes nothing of another tenant, and a second run decides nothing again', async () => {
    assert.equal((await search('other')).length, 2);
    assert.equal(
      (await runtime.store.pendingConsolidation({ tenantId: 'other', userId: 'u1' }, 10)).length,
      4,
    );
    const again = await runtime.consolidate(acme, { dryRun: false });
    assert.equal(again.sources, 0);
    assert.equal(again.decisions.length, 0);
    const ops = await runtime.eventLog.read(Topics.memoryOps, 0, 100);
    assert.equal(ops.length, 1);
    assert.equal(ops[0]?.value.tenantId, 'acme');
  });

  it('a dry run reports decisions and changes nothing', async () => {
    const other = { tenantId: 'other', userId: 'u1' };
    const dry = await runtime.consolidate(other, { dryRun: true });
    assert.equal(dry.counts.merge, 1);
    assert.equal((await search('other')).length, 2);
    assert.equal((await runtime.store.pendingConsolidation(other, 10)).length, 4);
    assert.equal((await runtime.eventLog.read(Topics.memoryOps, 0, 100)).length, 1);
  });
});

describe('sleep-time consolidation, embedded, LLM policy (scripted OpenAI-protocol server)', () => {
  const dir = tempDir('consolidation-llm');
  let runtime: EmbeddedRuntime;
  let llm: FakeOpenAiServer;
  const scope = { tenantId: 'acme', userId: 'u1' };
  const pairs = [
    ['Maya works at the bakery on Rua Augusta', 'Maya works at the bakery on Rua Augusta on weekends'],
    ['Maya lives in Lisbon with her partner Joao', 'Maya lives in Porto now with her partner Joao'],
    ['Maya plays the cello in a quartet', 'Maya plays the cello in a quartet every Tuesday'],
  ] as const;

  before(async () => {
    llm = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: failingCalls([1], 429, (request) => {
        const shown = request.messages.at(-1)?.content ?? '';
        if (shown.includes('bakery'))
          return JSON.stringify({
            reason: 'adds when',
            action: 'update',
            memory: 'Maya works weekends at the bakery on Rua Augusta',
            by: null,
          });
        if (shown.includes('Lisbon'))
          return JSON.stringify({ reason: 'she moved', action: 'supersede', memory: null, by: 'S1' });
        return 'I think the cello memory should stay as it is.';
      }),
    });
    runtime = await openRuntime(
      dir.path,
      {
        consolidation: { enabled: false, policy: 'llm' },
        llm: { baseUrl: llm.baseUrl, model: 'scripted', structuredOutput: 'json_object' },
      },
      new HashingEmbedder(64),
    );
    await ingestEvents(
      runtime,
      pairs.flatMap(([first, second], i) => [
        { ...turn('acme', 1, `a${i}`, first, i) },
        { ...turn('acme', 4, `b${i}`, second, i) },
      ]),
    );
  });
  after(async () => {
    await runtime.close();
    await llm.close();
    dir.remove();
  });

  it('updates, supersedes, and turns a malformed answer into an ignore with a dead letter; 429 is retried', async () => {
    const summary = await runtime.consolidate(scope, { dryRun: false });
    assert.deepEqual(summary.counts, { update: 1, supersede: 1, ignore: 1, merge: 0 });
    assert.equal(summary.problems, 1);
    assert.equal(
      llm.chatRequests()[0]?.messages.length,
      llm.chatRequests()[1]?.messages.length,
      '429 then the same request',
    );

    const find = async (text: string, extra: { asOf?: number; includeSuperseded?: boolean } = {}) =>
      (await runtime.store.search({ scope, text, limit: 10, ...extra })).map((hit) => hit.memory);
    const bakery = await find('bakery Rua Augusta');
    assert.ok(bakery.some((m) => m.text === 'Maya works weekends at the bakery on Rua Augusta'));
    assert.equal(
      bakery.filter((m) => m.text.includes('bakery')).length,
      2,
      'the new version and the newer source',
    );

    const lives = (memories: readonly { text: string }[]) =>
      memories.filter((m) => m.text.includes('lives')).map((m) => m.text);
    const homes = (await find('Maya lives partner Joao')).filter((m) => m.text.includes('lives'));
    assert.equal(homes.length, 1, 'the contradicted memory is hidden by default');
    assert.match(homes[0]?.text ?? '', /Porto/);
    const asOf = lives(await find('Maya lives partner Joao', { asOf: Date.parse(day(2)) }));
    assert.equal(asOf.length, 1);
    assert.match(asOf[0] ?? '', /Lisbon/, 'as of before the move: Lisbon');
    const all = (await find('Maya lives partner Joao', { includeSuperseded: true })).filter((m) =>
      m.text.includes('lives'),
    );
    assert.equal(all.length, 2);
    const lisbon = all.find((m) => m.text.includes('Lisbon'));
    assert.equal(lisbon?.validTo, Date.parse(day(4)));
    assert.equal(lisbon?.supersededBy, homes[0]?.id);
    const history = await runtime.store.history(scope, lisbon?.id ?? '');
    assert.deepEqual(
      history?.ops.map((recorded) => recorded.op.op),
      ['supersede'],
    );

    const letters = (await runtime.eventLog.read(Topics.deadLetters, 0, 100)).map((r) => r.value);
    const letter = letters.find((l) => l.stage === 'consolidator');
    assert.equal(letter?.errorCode, 'malformed_answer');
    assert.match(letter?.reason ?? '', /decided ignore/);
    assert.match(letter?.payload ?? '', /cello memory should stay/);
    assert.equal(
      // The source text: compression may drop the word from what a prompt shows.
      (await find('cello quartet')).filter((m) => (m.sourceText ?? m.text).includes('cello')).length,
      2,
      'ignored: both stay',
    );
  });
});

describe('sleep-time consolidation in a serving process (the in-process runner’s schedule)', () => {
  it('consolidates a user once enough new memories wait, without being asked', async () => {
    const dir = tempDir('consolidation-serve');
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir.path,
        consolidation: { minNewEntries: 2, checkMs: 100 },
        pipeline: { isolation: 'inline' },
      },
    });
    const runtime = await EmbeddedRuntime.open(config, {
      logger: stderrLogger('warn'),
      clock: systemClock,
      models: { embedder: new HashingEmbedder(64) },
      serving: true,
    });
    try {
      runtime.startPipeline();
      const text = 'Maya keeps bees on the roof of her building in Porto.';
      await ingestEvents(runtime, [turn('acme', 1, 'x1', text, 1), turn('acme', 2, 'x2', text, 1)]);
      const scope = { tenantId: 'acme', userId: 'u1' };
      for (let waited = 0; (await runtime.store.pendingConsolidation(scope, 10)).length > 0; waited += 50) {
        if (waited > 20_000) throw new Error('the runner never consolidated the user');
        await sleep(50);
      }
      const hits = await runtime.store.search({ scope, text: 'bees roof Porto', limit: 10 });
      assert.equal(hits.length, 1, 'merged by the scheduled run');
      assert.equal(hits[0]?.memory.sourceTurnIds.length, 2);
    } finally {
      await runtime.close();
      dir.remove();
    }
  });
});
