import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { UserErasure, type ErasureReceipt } from '../../services/app/user-erasure.js';
import { ErasureReceiptSchema } from '../../services/app/api-schemas.js';
import { Ingestion } from '../../services/app/ingestion.js';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import { SqliteLlmLedger } from '../../services/adapters/sqlite/sqlite-llm-ledger.js';
import { InvalidInputError } from '../../services/core/errors.js';
import { eventDedupKey } from '../../services/core/model/keys.js';
import { Topics, conversationKey, type TopicName } from '../../services/core/model/topics.js';
import { systemClock } from '../../services/core/ports/clock.js';
import type { EventLog } from '../../services/core/ports/event-log.js';
import { decodeTurnInput } from '../../services/ingest/index.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { factPerLine, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { openRuntime } from '../support/embedded.js';
import { tempDir } from '../support/cli.js';
import { makeTurn } from '../support/event-fixtures.js';
import { embeddedWrites, makeEntry } from '../support/memory-fixtures.js';
import { silentLogger } from '../support/memory-logger.js';

const day = (n: number) => new Date(Date.UTC(2026, 0, n, 9)).toISOString();
const sep = '\u001f';

function turn(tenantId: string, userId: string, conversation: string, turnId: string, text: string) {
  return {
    tenantId,
    userId,
    conversationId: conversation,
    sessionId: `s-${conversation}`,
    turnId,
    seq: Number(turnId.replace(/\D/g, '')),
    role: 'user',
    speaker: userId,
    text,
    occurredAt: day(Number(conversation.replace(/\D/g, '')) || 1),
  };
}

/** Words only user alice of tenant acme ever said: none may be readable anywhere after her erasure. */
const secrets = ['Waffles', 'Zanzibar', 'Quokka', 'Ushuaia'];

async function ingest(runtime: EmbeddedRuntime, events: readonly unknown[], endSessions: boolean) {
  const items = events.map((raw, index) => ({
    line: index + 1,
    label: `#${index}`,
    raw: JSON.stringify(raw),
    result: decodeTurnInput(raw, {}),
  }));
  await new Ingestion(runtime.eventLog, systemClock).ingest(items, { source: 'test', endSessions });
  await runtime.waitForDrain();
}

async function readAll<T extends TopicName>(log: EventLog, topic: T) {
  return log.read(topic, 0, 1_000_000);
}

/** The keys of every stage's state. */
async function stateKeys(log: EventLog): Promise<Map<string, string[]>> {
  const groups = new Map<string, string[]>();
  for (const group of ['compressor', 'segmenter', 'summarizer', 'indexer', 'applier'])
    groups.set(group, await log.stateOf(group).keys(''));
  return groups;
}

function sqliteCount(file: string, sql: string, ...params: unknown[]): number {
  const db = new Database(file, { readonly: true });
  try {
    return (
      (db
        .prepare(sql)
        .pluck()
        .get(...params) as number | undefined) ?? 0
    );
  } finally {
    db.close();
  }
}

describe('erasing a user, embedded (log, stage state, store, LLM ledger)', () => {
  const dir = tempDir('user-erasure');
  let runtime: EmbeddedRuntime;
  let llm: FakeOpenAiServer;
  let erasure: UserErasure;
  const alice = { tenantId: 'acme', userId: 'alice' };
  const bob = { tenantId: 'acme', userId: 'bob' };
  /** Another tenant's user with the same id: not the one erased. */
  const otherAlice = { tenantId: 'other', userId: 'alice' };
  let receipt: ErasureReceipt;
  const expected = new Map<string, number>();
  let aliceMemoryIds: string[] = [];
  let bobRawBefore = 0;
  let bobCallsBefore = 0;

  before(async () => {
    llm = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: (request) => {
        const content = request.messages.at(-1)?.content ?? '';
        // An answer that never decodes: dead-lettered with the answer (which holds the user's words).
        if (content.includes('Quokka')) return 'Sorry: the gym Quokka Fitness is not JSON';
        return factPerLine(content);
      },
    });
    runtime = await openRuntime(
      dir.path,
      {
        consolidation: { enabled: false, policy: 'near-duplicate' },
        llm: { baseUrl: llm.baseUrl, model: 'scripted', structuredOutput: 'json_object' },
      },
      new HashingEmbedder(64),
    );
    erasure = new UserErasure({
      log: runtime.eventLog,
      store: runtime.store,
      ledger: runtime.ledger,
      clock: systemClock,
    });
    const corgi = 'I adopted a corgi named Waffles last spring.';
    await ingest(
      runtime,
      [
        turn('acme', 'alice', 'a1', 't1', corgi),
        turn('acme', 'alice', 'a1', 't2', 'My locker code is Zanzibar 4471.'),
        turn('acme', 'alice', 'a2', 't3', corgi),
        turn('acme', 'alice', 'a3', 't4', 'I train at the Quokka gym.'),
        turn('acme', 'bob', 'b1', 't1', 'I keep bees on my roof in Lyon.'),
        turn('other', 'alice', 'c1', 't1', 'I collect vintage typewriters.'),
        // Bad input naming alice but no tenant (as the HTTP API gets it): dead-lettered.
        { userId: 'alice', conversationId: 'a1', turnId: 't9', role: 'user', text: 'Waffles', seq: 'x' },
      ],
      true,
    );
    // Open sessions: their turns wait in the segmenter's buffers.
    await ingest(
      runtime,
      [
        turn('acme', 'alice', 'a4', 't5', 'Planning a trip to Ushuaia soon.'),
        turn('acme', 'bob', 'b2', 't2', 'Thinking about a second beehive.'),
      ],
      false,
    );
    // Versions and recorded ops: the two corgi memories are merged into a new version.
    const merged = await runtime.consolidate(alice, { dryRun: false });
    assert.equal(merged.counts.merge, 1, 'a merge to erase');
    await runtime.waitForDrain();

    // What the receipt must count, read before the erasure.
    const versions = await runtime.store.list({ scope: alice, limit: 1000, includeSuperseded: true });
    aliceMemoryIds = versions.items.map((m) => m.id);
    expected.set('memory-store', aliceMemoryIds.length);
    const isAlice = (owner: { tenantId: string; userId: string | null }) =>
      owner.tenantId === 'acme' && owner.userId === 'alice';
    const log = runtime.eventLog;
    expected.set(
      `event-log:${Topics.raw}`,
      (await readAll(log, Topics.raw)).filter((r) => isAlice(r.value)).length,
    );
    expected.set(
      `event-log:${Topics.compressed}`,
      (await readAll(log, Topics.compressed)).filter((r) => isAlice(r.value.event)).length,
    );
    expected.set(
      `event-log:${Topics.segments}`,
      (await readAll(log, Topics.segments)).filter((r) => isAlice(r.value)).length,
    );
    expected.set(
      `event-log:${Topics.memories}`,
      (await readAll(log, Topics.memories)).filter((r) => isAlice(r.value)).length,
    );
    expected.set(
      `event-log:${Topics.memoryOps}`,
      (await readAll(log, Topics.memoryOps)).filter((r) => isAlice(r.value)).length,
    );
    expected.set(
      `event-log:${Topics.deadLetters}`,
      (await readAll(log, Topics.deadLetters)).filter((r) => secrets.some((s) => r.value.payload.includes(s)))
        .length,
    );
    for (const [group, keys] of await stateKeys(log)) {
      if (keys.length > 0)
        expected.set(
          `stage-state:${group}`,
          keys.filter((k) => k.includes(`${sep}acme${sep}alice${sep}`)).length,
        );
    }
    const calls = await runtime.ledger.totals({ tenantId: 'acme', byUser: true });
    const callsOf = (userId: string) =>
      calls.filter((t) => t.userId === userId).reduce((sum, t) => sum + t.calls + t.reusedAnswers, 0);
    expected.set('llm-ledger', callsOf('alice'));
    bobCallsBefore = callsOf('bob');
    bobRawBefore = (await readAll(log, Topics.raw)).filter((r) => r.value.userId === 'bob').length;

    // Everything to erase is really there.
    for (const where of [
      'memory-store',
      'llm-ledger',
      `event-log:${Topics.deadLetters}`,
      `event-log:${Topics.memoryOps}`,
      'stage-state:segmenter',
    ])
      assert.ok((expected.get(where) ?? 0) > 0, `alice has something in ${where}`);

    receipt = await erasure.erase('acme', 'alice');
  });

  after(async () => {
    await runtime.close();
    await llm.close();
    dir.remove();
  });

  it('returns a receipt of what was removed, where and how many', () => {
    ErasureReceiptSchema.parse(receipt);
    assert.equal(receipt.tenantId, 'acme');
    assert.equal(receipt.userId, 'alice');
    assert.equal(receipt.tombstone, true);
    assert.ok(Math.abs(Date.parse(receipt.erasedAt) - Date.now()) < 60_000);
    const counts = new Map(receipt.removed.map((r) => [r.where as string, r.count]));
    for (const topic of Object.values(Topics)) assert.ok(counts.has(`event-log:${topic}`), topic);
    assert.deepEqual(Object.fromEntries(counts), Object.fromEntries(expected));
  });

  it("leaves nothing of the user in search, the store's versions and history, or pending consolidation", async () => {
    for (const secret of secrets) {
      assert.deepEqual(
        await runtime.store.search({ scope: alice, text: secret, limit: 10, includeSuperseded: true }),
        [],
      );
      const tenantWide = await runtime.store.search({
        scope: { tenantId: 'acme' },
        text: secret,
        limit: 10,
        includeSuperseded: true,
      });
      assert.deepEqual(tenantWide, [], `no memory of the tenant says ${secret}`);
    }
    assert.deepEqual(
      (await runtime.store.list({ scope: alice, limit: 100, includeSuperseded: true })).items,
      [],
    );
    for (const id of aliceMemoryIds) {
      assert.equal(await runtime.store.get(alice, id), undefined);
      assert.equal(await runtime.store.history(alice, id), undefined);
    }
    assert.deepEqual(await runtime.store.pendingConsolidation(alice, 100), []);
    assert.ok(!(await runtime.store.pendingUsers('acme')).some((u) => u.userId === 'alice'));
  });

  it('leaves nothing of the user in any topic, in stage state, or in the LLM ledger', async () => {
    for (const topic of Object.values(Topics)) {
      const text = JSON.stringify((await readAll(runtime.eventLog, topic)).map((r) => r.value));
      for (const secret of secrets) assert.ok(!text.includes(secret), `${topic} still says ${secret}`);
    }
    for (const [group, keys] of await stateKeys(runtime.eventLog)) {
      assert.ok(!keys.some((k) => k.includes(`${sep}acme${sep}alice${sep}`)), `${group} state of alice`);
      for (const key of keys) {
        const value = (await runtime.eventLog.stateOf(group).get(key)) ?? '';
        for (const secret of secrets) assert.ok(!value.includes(secret), `${group}/${key} says ${secret}`);
      }
    }
    const totals = await runtime.ledger.totals({ tenantId: 'acme', byUser: true });
    assert.ok(!totals.some((t) => t.userId === 'alice'));
    const ledgerFile = join(dir.path, 'ledger.db');
    assert.equal(
      sqliteCount(
        ledgerFile,
        `SELECT COUNT(*) FROM llm_calls WHERE tenant_id = 'acme' AND user_id = 'alice'`,
      ),
      0,
    );
    for (const secret of secrets)
      assert.equal(
        sqliteCount(ledgerFile, 'SELECT COUNT(*) FROM llm_calls WHERE instr(answer_text, ?) > 0', secret),
        0,
      );
  });

  it('leaves the words in no database file (deleted pages are zeroed, the write-ahead logs emptied)', () => {
    for (const name of ['log.db', 'memories.db', 'ledger.db']) {
      for (const file of [name, `${name}-wal`]) {
        const path = join(dir.path, file);
        if (!existsSync(path)) continue;
        const bytes = readFileSync(path);
        for (const secret of secrets) assert.equal(bytes.indexOf(secret), -1, `${file} holds ${secret}`);
      }
    }
  });

  it('keeps every other user: bob of the same tenant, and alice of another tenant', async () => {
    assert.equal((await runtime.store.search({ scope: bob, text: 'bees Lyon', limit: 5 })).length, 1);
    assert.equal(
      (await runtime.store.search({ scope: otherAlice, text: 'typewriters', limit: 5 })).length,
      1,
    );
    const raw = await readAll(runtime.eventLog, Topics.raw);
    assert.equal(raw.filter((r) => r.value.userId === 'bob').length, bobRawBefore);
    assert.ok(raw.some((r) => r.value.tenantId === 'other' && r.value.userId === 'alice'));
    const segmenter = await runtime.eventLog.stateOf('segmenter').keys('');
    assert.ok(
      segmenter.some((k) => k.includes(`${sep}acme${sep}bob${sep}`)),
      "bob's open buffer",
    );
    const calls = await runtime.ledger.totals({ tenantId: 'acme', byUser: true });
    assert.equal(
      calls.filter((t) => t.userId === 'bob').reduce((sum, t) => sum + t.calls + t.reusedAnswers, 0),
      bobCallsBefore,
    );
    assert.equal((await runtime.ledger.totals({ tenantId: 'other', byUser: true }))[0]?.userId, 'alice');
  });

  it('leaves a tombstone with the receipt; erasing again removes nothing and says so', async () => {
    const [tombstone] = await runtime.eventLog.erasures('acme');
    assert.equal(tombstone?.userId, 'alice');
    assert.equal(tombstone?.erasedAt, Date.parse(receipt.erasedAt));
    assert.ok(tombstone?.completedAt !== null);
    assert.deepEqual(JSON.parse(tombstone?.receipt ?? 'null'), receipt);

    const again = await erasure.erase('acme', 'alice');
    assert.equal(again.tombstone, true);
    assert.deepEqual(
      again.removed.filter((r) => r.count !== 0),
      [],
      'nothing was left',
    );
    assert.deepEqual(await erasure.resumeIncomplete(), [], 'no erasure is unfinished');
  });

  it('refuses ids that are empty or not ids, naming the field', async () => {
    await assert.rejects(
      erasure.erase('acme', ''),
      (e) => e instanceof InvalidInputError && e.field === 'userId',
    );
    await assert.rejects(
      erasure.erase('', 'alice'),
      (e) => e instanceof InvalidInputError && e.field === 'tenantId',
    );
  });

  it('the pipeline goes on, and the user can start over with new memories', async () => {
    await ingest(runtime, [turn('acme', 'alice', 'a5', 't6', 'I now play the oboe on Sundays.')], true);
    const hits = await runtime.store.search({ scope: alice, text: 'oboe Sundays', limit: 5 });
    assert.equal(hits.length, 1);
    assert.ok(hits.every((h) => !secrets.some((s) => h.memory.text.includes(s))));
  });
});

describe('erasing a user with 10,000 memories, embedded', () => {
  const dir = tempDir('user-erasure-speed');
  after(() => dir.remove());

  it('takes under 5 s (memories with vectors, raw turns, stage state, LLM calls)', async () => {
    const log = SqliteEventLog.open(join(dir.path, 'log.db'), { logger: silentLogger, clock: systemClock });
    const store = SqliteMemoryStore.open(join(dir.path, 'memories.db'));
    const ledger = SqliteLlmLedger.open(join(dir.path, 'ledger.db'));
    try {
      const embedder = new HashingEmbedder(384);
      const user = { tenantId: 'tenant-a', userId: 'big' };
      const n = 10_000;
      const entries = (userId: string, count: number) =>
        Array.from({ length: count }, (_, i) =>
          makeEntry({
            ...user,
            userId,
            id: `m-${userId}-${i}`,
            text: `${userId} fact ${i} about topic ${i % 97}`,
            occurredAt: i,
          }),
        );
      await store.upsert(await embeddedWrites(embedder, entries('big', n)));
      await store.upsert(await embeddedWrites(embedder, entries('small', 500)));
      const turns = (userId: string, count: number) =>
        Array.from({ length: count }, (_, i) => {
          const event = makeTurn(i, { ...user, userId, conversationId: `c${i % 50}`, turnId: `t${i}` });
          return { key: conversationKey(event), value: event, dedupKey: eventDedupKey(event) };
        });
      for (let i = 0; i < n; i += 2_000) await log.append(Topics.raw, turns('big', n).slice(i, i + 2_000));
      await log.append(Topics.raw, turns('small', 500));
      for (let i = 0; i < 200; i++) {
        await ledger.record({
          callId: `call-${i}`,
          requestHash: `req-${i}`,
          ...user,
          conversationId: 'c1',
          stage: 'summarizer',
          purpose: 'extract',
          model: 'm',
          promptHash: null,
          promptTokens: 10,
          completionTokens: 5,
          latencyMs: 100,
          outcome: 'ok',
          error: null,
          at: Date.now(),
          completion: { text: 'answer', promptTokens: 10, completionTokens: 5, finishReason: 'stop' },
        });
      }

      const started = performance.now();
      const receipt = await new UserErasure({ log, store, ledger, clock: systemClock }).erase(
        'tenant-a',
        'big',
      );
      const ms = performance.now() - started;
      console.log(`erased a user with ${n} memories and ${n} raw turns in ${ms.toFixed(0)} ms`);

      const counts = new Map(receipt.removed.map((r) => [r.where as string, r.count]));
      assert.equal(counts.get('memory-store'), n);
      assert.equal(counts.get(`event-log:${Topics.raw}`), n);
      assert.equal(counts.get('llm-ledger'), 200);
      assert.ok(ms < 5_000, `erasure took ${ms.toFixed(0)} ms`);
      assert.equal((await store.stats({ tenantId: 'tenant-a', userId: 'small' })).live, 500);
      assert.equal((await log.usage(Topics.raw)).records, 500);
    } finally {
      await ledger.close();
      await store.close();
      await log.close();
    }
  });
});
