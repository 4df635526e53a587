import { setTimeout as delay } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { LightmemError, type ErrorCode } from '../../services/core/errors.js';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import type { Scope } from '../../services/core/model/scope.js';
import type { MemoryStore, SearchHit, SearchRequest } from '../../services/core/ports/memory-store.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { DAY, HOUR, T0, embeddedWrites, makeEntry, makeOp, plainWrites } from '../support/memory-fixtures.js';

/**
 * Behaviour every MemoryStore adapter must have. Uses the port only, so the SQLite and Elasticsearch
 * adapters run the very same cases. `open` must return an empty store each time.
 */
export function memoryStoreContract(name: string, open: () => Promise<MemoryStore>): void {
  describe(`MemoryStore contract: ${name}`, () => {
    let store: MemoryStore;
    const embedder = new HashingEmbedder(64);
    const A: Scope = { tenantId: 'tenant-a' };
    const A1: Scope = { tenantId: 'tenant-a', userId: 'user-1' };

    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    const write = async (entries: MemoryEntry[], vectors = false) =>
      store.upsert(vectors ? await embeddedWrites(embedder, entries) : plainWrites(entries));
    const request = (scope: Scope, text: string, extra: Partial<SearchRequest> = {}): SearchRequest => ({
      scope,
      text,
      limit: 10,
      ...extra,
    });
    const hybrid = async (
      scope: Scope,
      text: string,
      extra: Partial<SearchRequest> = {},
    ): Promise<SearchHit[]> =>
      store.search(
        request(scope, text, { vector: embedder.embedOne(text), embedderId: embedder.id, ...extra }),
      );
    const lexical = async (
      scope: Scope,
      text: string,
      extra: Partial<SearchRequest> = {},
    ): Promise<SearchHit[]> => store.search(request(scope, text, extra));
    const ids = (hits: readonly SearchHit[]) => hits.map((hit) => hit.memory.id);

    describe('upsert', () => {
      it('inserts, then reports unchanged for the same content and updated for a change', async () => {
        const a = makeEntry({ text: 'Alice moved to Lisbon in March.' });
        const b = makeEntry({ text: 'Alice has two cats.' });
        assert.deepEqual(await write([a, b]), { inserted: 2, updated: 0, unchanged: 0 });
        assert.deepEqual(await write([a, b]), { inserted: 0, updated: 0, unchanged: 2 });
        const changed = { ...b, text: 'Alice has three cats.' };
        const c = makeEntry({ text: 'Alice drinks tea.' });
        assert.deepEqual(await write([a, changed, c]), { inserted: 1, updated: 1, unchanged: 1 });
        assert.equal((await store.get(A1, b.id))?.text, 'Alice has three cats.');
      });

      it('round-trips every field through get', async () => {
        const full = makeEntry({
          agentId: 'agent-7',
          kind: 'relation',
          speaker: 'Dr. Ana Souza',
          text: 'Ana is the supervisor of Bruno — “quoted” text, émojis 🎉 and 中文.',
          occurredAt: T0 + 5 * HOUR,
          zoneOffset: '-03:00',
          validFrom: T0 + 5 * HOUR,
          validTo: Date.now() + 365 * DAY,
          sourceTurnIds: ['turn-3', 'turn-1', 'turn-2'],
          pipeline: { promptHash: 'abc123', extractor: 'gpt-x@2' },
        });
        const bare = makeEntry({ text: 'No agent here.', sourceTurnIds: [] });
        await write([full, bare]);
        assert.deepEqual(await store.get(A1, full.id), full);
        assert.deepEqual(await store.get(A1, bare.id), bare);
        assert.equal(await store.get(A1, 'mem_missing'), undefined);
      });

      it('treats a new ingestedAt alone as unchanged and keeps the first one', async () => {
        const entry = makeEntry();
        await write([entry]);
        const again = { ...entry, ingestedAt: entry.ingestedAt + DAY };
        assert.deepEqual(await write([again]), { inserted: 0, updated: 0, unchanged: 1 });
        assert.equal((await store.get(A1, entry.id))?.ingestedAt, entry.ingestedAt);
      });

      it('writes a batch of 2,000 in one call and is idempotent when replayed', async () => {
        const entries = Array.from({ length: 2_000 }, (_, i) =>
          makeEntry({ text: `Fact number ${i} about order ${i * 7}.`, occurredAt: T0 + i }),
        );
        const writes = await embeddedWrites(embedder, entries);
        assert.deepEqual(await store.upsert(writes), { inserted: 2_000, updated: 0, unchanged: 0 });
        assert.deepEqual(await store.upsert(writes), { inserted: 0, updated: 0, unchanged: 2_000 });
        assert.equal((await store.stats(A)).live, 2_000);
        const hits = await hybrid(A1, 'order 6993');
        assert.equal(hits[0]?.memory.text, 'Fact number 999 about order 6993.');
      });

      it('replaces the text index and the vector when the content changes', async () => {
        const entry = makeEntry({ text: 'The router model is Zyxel.' });
        await write([entry], true);
        assert.deepEqual(ids(await lexical(A1, 'zyxel')), [entry.id]);
        await write([{ ...entry, text: 'The router model is Netgear.' }], true);
        assert.deepEqual(await lexical(A1, 'zyxel'), []);
        const hits = await hybrid(A1, 'Netgear');
        assert.deepEqual(ids(hits), [entry.id]);
        assert.ok(
          hits[0]?.semantic !== null && (hits[0]?.semantic ?? 0) > 0.3,
          'vector follows the new text',
        );
        assert.equal((await store.stats(A)).live, 1);
      });

      it('refuses to move an id into another tenant or user (conflict)', async () => {
        const entry = makeEntry({ id: 'mem_shared' });
        await write([entry]);
        await expectCode(write([{ ...entry, tenantId: 'tenant-b' }]), 'conflict');
        await expectCode(write([{ ...entry, userId: 'user-2' }]), 'conflict');
        assert.equal(await store.get({ tenantId: 'tenant-b' }, 'mem_shared'), undefined);
        assert.equal((await store.get(A1, 'mem_shared'))?.tenantId, 'tenant-a');
      });

      it('rejects invalid entries with invalid_input', async () => {
        await expectCode(write([makeEntry({ tenantId: 'bad tenant' })]), 'invalid_input');
        await expectCode(write([makeEntry({ userId: '' })]), 'invalid_input');
        await expectCode(write([makeEntry({ occurredAt: Number.NaN })]), 'invalid_input');
        await expectCode(
          store.upsert([{ entry: makeEntry(), embedding: new Float32Array([Number.NaN, 1]) }]),
          'invalid_input',
        );
        assert.deepEqual(await store.upsert([]), { inserted: 0, updated: 0, unchanged: 0 });
        assert.equal((await store.stats(A)).live, 0);
      });
    });

    describe('embedder consistency', () => {
      it('refuses vectors of another embedder or dimension (model_mismatch)', async () => {
        await write([makeEntry({ text: 'first' })], true);
        const other = new HashingEmbedder(32);
        await expectCode(
          store.upsert(await embeddedWrites(other, [makeEntry({ text: 'second' })])),
          'model_mismatch',
        );
        const sameIdOtherDims = [
          {
            entry: makeEntry({ text: 'third', pipeline: { embedder: embedder.id } }),
            embedding: other.embedOne('third'),
          },
        ];
        await expectCode(store.upsert(sameIdOtherDims), 'model_mismatch');
        const claimsOther = makeEntry({ text: 'fourth', pipeline: { embedder: other.id } });
        await expectCode(store.upsert([{ entry: claimsOther }]), 'model_mismatch');
        assert.equal((await store.stats(A)).live, 1);
        assert.equal((await store.stats(A)).embedderId, embedder.id);
      });

      it('refuses a query from another embedder (model_mismatch)', async () => {
        await write([makeEntry({ text: 'first' })], true);
        await expectCode(hybrid(A1, 'first', { embedderId: 'some-other-model' }), 'model_mismatch');
        await expectCode(
          lexical(A1, 'first', {
            vector: new HashingEmbedder(32).embedOne('first'),
            embedderId: embedder.id,
          }),
          'model_mismatch',
        );
      });

      it('searches lexically when no vectors are stored, even if the query has one', async () => {
        await write([makeEntry({ text: 'Bruno likes jazz.' })]);
        const hits = await hybrid(A1, 'jazz');
        assert.equal(hits.length, 1);
        assert.equal(hits[0]?.semantic, null);
        assert.equal(hits[0]?.score, hits[0]?.lexical);
        assert.equal((await store.stats()).embedderId, null);
      });
    });

    describe('search', () => {
      it('ranks lexical matches; without vectors the score is the lexical part', async () => {
        const best = makeEntry({ text: 'Carla booked a flight to Tokyo for the Tokyo conference.' });
        const other = makeEntry({ text: 'Carla prefers window seats on a flight.' });
        const none = makeEntry({ text: 'The invoice was paid in full.' });
        await write([best, other, none]);
        const hits = await lexical(A1, 'flight to Tokyo');
        assert.deepEqual(ids(hits), [best.id, other.id]);
        for (const hit of hits) {
          assert.equal(hit.semantic, null);
          assert.ok(hit.lexical !== null && hit.lexical > 0 && hit.lexical <= 1);
          assert.equal(hit.score, hit.lexical);
        }
        assert.equal(hits[0]?.score, 1);
      });

      it('finds what a named person said through the speaker', async () => {
        const byDana = makeEntry({ speaker: 'Dana', text: 'I will send the contract on Monday.' });
        const byEli = makeEntry({ speaker: 'Eli', text: 'I will call back on Monday.' });
        await write([byDana, byEli]);
        assert.deepEqual(ids(await lexical(A1, 'what did Dana promise')), [byDana.id]);
        const monday = await lexical(A1, 'Dana Monday');
        assert.equal(monday[0]?.memory.id, byDana.id);
        assert.equal(monday.length, 2);
      });

      it('returns [] for a query without usable words and without a vector', async () => {
        await write([makeEntry()]);
        for (const text of ['', '   ', '?!', '"*"', '()']) assert.deepEqual(await lexical(A1, text), []);
      });

      it('fuses lexical and semantic parts into a score in [0, 1]', async () => {
        const entries = [
          makeEntry({ text: 'Gabriel ordered a blue bicycle helmet.' }),
          makeEntry({ text: 'Gabriel returned the bicycle.' }),
          makeEntry({ text: 'Helena asked about the refund policy.' }),
        ];
        await write(entries, true);
        const hits = await hybrid(A1, 'Gabriel ordered a blue bicycle helmet');
        assert.equal(hits[0]?.memory.id, entries[0]?.id);
        for (const hit of hits) {
          assert.ok(hit.score >= 0 && hit.score <= 1, `score ${hit.score}`);
          assert.ok(hit.lexical !== null || hit.semantic !== null);
          const parts = [hit.lexical, hit.semantic].filter((p): p is number => p !== null);
          assert.ok(hit.score <= Math.max(...parts) + 1e-9, 'a weighted mean never exceeds its largest part');
        }
        const top = hits[0];
        assert.ok(top !== undefined && top.lexical !== null && top.semantic !== null);
        assert.ok(top.semantic > 0.99, 'identical bag of words: cosine 1');
        for (let i = 1; i < hits.length; i++) assert.ok((hits[i - 1]?.score ?? 0) >= (hits[i]?.score ?? 0));
      });

      it('finds by vector alone when the text has no usable words', async () => {
        const entry = makeEntry({ text: 'printer jam' });
        await write([entry, makeEntry({ text: 'unrelated words entirely' })], true);
        const hits = await store.search({
          scope: A1,
          text: '??',
          vector: embedder.embedOne('printer jam'),
          embedderId: embedder.id,
          limit: 1,
        });
        assert.deepEqual(ids(hits), [entry.id]);
        assert.equal(hits[0]?.lexical, null);
        assert.ok((hits[0]?.semantic ?? 0) > 0.99);
      });

      it('orders ties newest first, then by id', async () => {
        const older = makeEntry({ id: 'mem_b', text: 'same words here', occurredAt: T0 });
        const newer = makeEntry({ id: 'mem_c', text: 'same words here', occurredAt: T0 + HOUR });
        const newerToo = makeEntry({ id: 'mem_a', text: 'same words here', occurredAt: T0 + HOUR });
        await write([older, newer, newerToo], true);
        assert.deepEqual(ids(await lexical(A1, 'same words')), ['mem_a', 'mem_c', 'mem_b']);
        assert.deepEqual(ids(await hybrid(A1, 'same words here')), ['mem_a', 'mem_c', 'mem_b']);
      });

      it('honours the limit', async () => {
        await write(
          Array.from({ length: 30 }, (_, i) => makeEntry({ text: `ticket ${i} about billing` })),
          true,
        );
        assert.equal((await lexical(A1, 'billing', { limit: 7 })).length, 7);
        assert.equal((await hybrid(A1, 'billing', { limit: 25 })).length, 25);
        await expectCode(lexical(A1, 'billing', { limit: 0 }), 'invalid_input');
        await expectCode(lexical(A1, 'billing', { limit: 1.5 }), 'invalid_input');
      });

      it('applies the time range: from inclusive, to exclusive', async () => {
        const at = (h: number) => makeEntry({ text: `meeting note hour ${h}`, occurredAt: T0 + h * HOUR });
        const entries = [at(0), at(1), at(2), at(3)];
        await write(entries, true);
        const range = { from: T0 + HOUR, to: T0 + 3 * HOUR };
        const expected = [entries[1]?.id, entries[2]?.id].sort();
        assert.deepEqual(ids(await lexical(A1, 'meeting note', { timeRange: range })).sort(), expected);
        assert.deepEqual(ids(await hybrid(A1, 'meeting note', { timeRange: range })).sort(), expected);
        assert.equal((await hybrid(A1, 'meeting note', { timeRange: { from: T0 + 3 * HOUR } })).length, 1);
        assert.equal((await hybrid(A1, 'meeting note', { timeRange: { to: T0 + HOUR } })).length, 1);
        const everything = { from: -Number.MAX_VALUE, to: Number.MAX_VALUE };
        assert.equal((await hybrid(A1, 'meeting note', { timeRange: everything })).length, 4);
        await expectCode(lexical(A1, 'meeting', { timeRange: { from: Number.NaN } }), 'invalid_input');
      });

      it('returns live memories by default and history with includeSuperseded', async () => {
        const old = makeEntry({ text: 'Ivo lives in Porto.', occurredAt: T0 });
        const replacement = makeEntry({ text: 'Ivo lives in Braga.', occurredAt: T0 + DAY });
        const expired = makeEntry({ text: 'Ivo lives in Faro for the summer.', validTo: T0 + 2 * DAY });
        const future = makeEntry({
          text: 'Ivo lives in Evora until next decade.',
          validTo: Date.now() + 3650 * DAY,
        });
        await write([old, replacement, expired, future], true);
        assert.equal(await store.supersede(A1, [old.id], replacement.id, T0 + DAY), 1);
        const liveIds = [replacement.id, future.id].sort();
        assert.deepEqual(ids(await lexical(A1, 'Ivo lives')).sort(), liveIds);
        assert.deepEqual(ids(await hybrid(A1, 'Ivo lives')).sort(), liveIds);
        const all = [old.id, replacement.id, expired.id, future.id].sort();
        assert.deepEqual(ids(await lexical(A1, 'Ivo lives', { includeSuperseded: true })).sort(), all);
        assert.deepEqual(ids(await hybrid(A1, 'Ivo lives', { includeSuperseded: true })).sort(), all);
      });

      it('finds a user’s memory by vector even when other users of the tenant have closer ones', async () => {
        const crowd = Array.from({ length: 300 }, (_, i) =>
          makeEntry({ userId: `user-x${i}`, text: 'password reset request' }),
        );
        const mine = makeEntry({ text: 'password reset for the router admin page' });
        await write([...crowd, mine], true);
        const hits = await store.search({
          scope: A1,
          text: '',
          vector: embedder.embedOne('password reset request'),
          embedderId: embedder.id,
          limit: 5,
        });
        assert.deepEqual(ids(hits), [mine.id]);
      });
    });

    describe('isolation', () => {
      const tenantB: Scope = { tenantId: 'tenant-b', userId: 'user-1' };
      const seed = async () => {
        const mine = makeEntry({ text: 'Alpha project kickoff notes.', speaker: 'Kim' });
        const sameTenantOtherUser = makeEntry({
          userId: 'user-2',
          text: 'Zebra secret password tenant-b user-1',
        });
        const otherTenantSameUser = makeEntry({
          tenantId: 'tenant-b',
          text: 'Zebra alpha secret from tenant b',
        });
        await write([mine, sameTenantOtherUser, otherTenantSameUser], true);
        return { mine, sameTenantOtherUser, otherTenantSameUser };
      };

      it('never returns another tenant’s or user’s memories', async () => {
        const { mine, otherTenantSameUser, sameTenantOtherUser } = await seed();
        assert.deepEqual(await lexical(A1, 'zebra secret'), []);
        // KNN ranks every vector of the scope, so the user's only memory may come back, but nothing else.
        for (const hit of await hybrid(A1, 'zebra secret')) assert.equal(hit.memory.id, mine.id);
        assert.deepEqual(ids(await hybrid(A1, 'zebra secret alpha')), [mine.id]);
        assert.deepEqual(ids(await hybrid(tenantB, 'zebra alpha')), [otherTenantSameUser.id]);
        const tenantWide = await hybrid(A, 'zebra secret password');
        assert.equal(tenantWide[0]?.memory.id, sameTenantOtherUser.id);
        for (const hit of tenantWide) assert.equal(hit.memory.tenantId, 'tenant-a');
        assert.equal(await store.get(tenantB, mine.id), undefined);
        assert.equal(await store.get(A1, sameTenantOtherUser.id), undefined);
        assert.equal(await store.get({ tenantId: 'tenant-a', userId: 'user-2' }, mine.id), undefined);
      });

      it('filters by agent, conversation and session', async () => {
        const e1 = makeEntry({
          agentId: 'agent-1',
          conversationId: 'c1',
          sessionId: 's1',
          text: 'refund approved',
        });
        const e2 = makeEntry({
          agentId: 'agent-2',
          conversationId: 'c1',
          sessionId: 's2',
          text: 'refund denied',
        });
        const e3 = makeEntry({
          agentId: null,
          conversationId: 'c2',
          sessionId: 's3',
          text: 'refund pending',
        });
        await write([e1, e2, e3], true);
        const find = async (scope: Scope) => ids(await hybrid(scope, 'refund')).sort();
        assert.deepEqual(await find({ ...A1, agentId: 'agent-1' }), [e1.id]);
        assert.deepEqual(await find({ ...A1, conversationId: 'c1' }), [e1.id, e2.id].sort());
        assert.deepEqual(await find({ ...A1, sessionId: 's3' }), [e3.id]);
        assert.deepEqual(await find({ ...A1, conversationId: 'c1', sessionId: 's3' }), []);
        assert.deepEqual(await find(A1), [e1.id, e2.id, e3.id].sort());
        const listed = await store.list({ scope: { ...A, agentId: 'agent-2' }, limit: 10 });
        assert.deepEqual(
          listed.items.map((e) => e.id),
          [e2.id],
        );
      });

      it('treats adversarial query text as plain words and never leaves the scope', async () => {
        const { mine } = await seed();
        const attacks = [
          'zebra',
          'zebra OR alpha',
          '"zebra" OR "alpha"',
          'zebra" OR "alpha',
          'scope: zebra',
          'scope:*',
          '{text speaker scope}: zebra',
          'text: zebra',
          'NEAR(zebra secret, 5)',
          'NEAR(',
          'zebra*',
          '*',
          '^zebra',
          '-alpha',
          'alpha NOT kickoff',
          'AND',
          'OR OR OR',
          'NOT',
          ')(',
          '""',
          "tenant_id = 'tenant-b'",
          "' OR 1=1 --",
          '"; DROP TABLE memories; --',
          "x') UNION SELECT * FROM memories --",
          'rowid > 0',
          'tenant-b user-2',
          'tenant-a user-1 user-2',
          'MATCH',
          'a\u0000b zebra',
          '\\"zebra\\"',
          '🎉 zebra 中文',
          'zebra '.repeat(5_000),
        ];
        for (const text of attacks) {
          for (const hits of [await lexical(A1, text), await hybrid(A1, text)]) {
            for (const hit of hits) {
              assert.equal(
                hit.memory.tenantId,
                'tenant-a',
                `tenant escaped with ${JSON.stringify(text.slice(0, 40))}`,
              );
              assert.equal(
                hit.memory.userId,
                'user-1',
                `user escaped with ${JSON.stringify(text.slice(0, 40))}`,
              );
            }
          }
        }
        // Syntax is dropped, the words still count: these find the user's own memory.
        assert.deepEqual(ids(await lexical(A1, 'NEAR(alpha kickoff)')), [mine.id]);
        assert.deepEqual(ids(await lexical(A1, '"alpha" OR scope:kim*')), [mine.id]);
        assert.equal((await store.stats()).live, 3, 'nothing was dropped or rewritten');
      });

      it('rejects malformed scopes with invalid_input', async () => {
        await expectCode(lexical({ tenantId: '' }, 'x'), 'invalid_input');
        await expectCode(lexical({ tenantId: "a' OR 1=1" }, 'x'), 'invalid_input');
        await expectCode(store.get({ tenantId: 'tenant-a', userId: 'user 1' }, 'mem_x'), 'invalid_input');
        await expectCode(store.list({ scope: { tenantId: 't', sessionId: '%' }, limit: 1 }), 'invalid_input');
      });
    });

    describe('list', () => {
      it('pages in (occurredAt, id) order with an opaque cursor', async () => {
        const entries = Array.from({ length: 23 }, (_, i) =>
          makeEntry({
            id: `mem_${String(i).padStart(2, '0')}`,
            text: `entry ${i}`,
            occurredAt: T0 + (i % 5) * HOUR,
          }),
        );
        await write([...entries].reverse());
        await write([makeEntry({ tenantId: 'tenant-b', text: 'not mine' })]);
        const expected = [...entries]
          .sort((a, b) => a.occurredAt - b.occurredAt || (a.id < b.id ? -1 : 1))
          .map((e) => e.id);
        const seen: string[] = [];
        let cursor: string | undefined;
        for (let page = 0; page < 10; page++) {
          const result = await store.list({ scope: A1, limit: 5, cursor });
          seen.push(...result.items.map((e) => e.id));
          if (result.nextCursor === null) break;
          cursor = result.nextCursor;
        }
        assert.deepEqual(seen, expected);
        const exact = await store.list({ scope: A1, limit: 23 });
        assert.equal(exact.items.length, 23);
        assert.equal(exact.nextCursor, null);
      });

      it('lists live memories unless includeSuperseded', async () => {
        const a = makeEntry({ text: 'old', occurredAt: T0 });
        const b = makeEntry({ text: 'new', occurredAt: T0 + 1 });
        await write([a, b]);
        await store.supersede(A1, [a.id], b.id, T0 + 2);
        assert.deepEqual(
          (await store.list({ scope: A1, limit: 10 })).items.map((e) => e.id),
          [b.id],
        );
        assert.deepEqual(
          (await store.list({ scope: A1, limit: 10, includeSuperseded: true })).items.map((e) => e.id),
          [a.id, b.id],
        );
      });

      it('rejects a malformed cursor and limit', async () => {
        await expectCode(store.list({ scope: A1, limit: 5, cursor: 'not-a-cursor' }), 'invalid_input');
        await expectCode(store.list({ scope: A1, limit: -1 }), 'invalid_input');
      });
    });

    describe('supersede', () => {
      it('closes validity within the scope only and counts what changed', async () => {
        const old = makeEntry({ text: 'plan basic' });
        const old2 = makeEntry({ text: 'plan basic again' });
        const next = makeEntry({ text: 'plan premium' });
        const foreign = makeEntry({ tenantId: 'tenant-b', text: 'plan basic' });
        await write([old, old2, next, foreign], true);
        const at = T0 + DAY;
        assert.equal(await store.supersede(A1, [old.id, old2.id, foreign.id, 'mem_missing'], next.id, at), 2);
        assert.equal(await store.supersede(A1, [old.id], next.id, at), 0, 'already superseded');
        assert.equal(await store.supersede(A1, [next.id], next.id, at), 0, 'never superseded by itself');
        assert.equal(
          await store.supersede({ tenantId: 'tenant-a', userId: 'user-2' }, [next.id], old.id, at),
          0,
        );
        const closed = await store.get(A1, old.id);
        assert.equal(closed?.validTo, at);
        assert.equal(closed?.supersededBy, next.id);
        assert.equal((await store.get({ tenantId: 'tenant-b' }, foreign.id))?.supersededBy, null);
        assert.deepEqual(ids(await hybrid(A1, 'plan basic')), [next.id]);
      });

      it('stays superseded when the original entry is written again (replay)', async () => {
        const old = makeEntry({ text: 'address: 1 Main St' });
        const next = makeEntry({ text: 'address: 9 Elm St' });
        await write([old, next], true);
        await store.supersede(A1, [old.id], next.id, T0 + DAY);
        assert.deepEqual(await write([old], true), { inserted: 0, updated: 0, unchanged: 1 });
        const edited = { ...old, text: 'address: 1 Main Street' };
        assert.deepEqual(await write([edited], true), { inserted: 0, updated: 1, unchanged: 0 });
        const stored = await store.get(A1, old.id);
        assert.equal(stored?.text, 'address: 1 Main Street');
        assert.equal(stored?.supersededBy, next.id);
        assert.deepEqual(ids(await hybrid(A1, 'address Main')), [next.id]);
      });
    });

    describe('erase', () => {
      it('erases a user everywhere and returns the ids', async () => {
        const u1 = [makeEntry({ text: 'Lena phone 555-0101' }), makeEntry({ text: 'Lena address Rua Nova' })];
        const u2 = makeEntry({ userId: 'user-2', text: 'Lena is also mentioned here' });
        const otherTenant = makeEntry({ tenantId: 'tenant-b', text: 'Lena in tenant b' });
        await write([...u1, u2, otherTenant], true);
        const erased = await store.erase(A1);
        assert.deepEqual(erased.sort(), u1.map((e) => e.id).sort());
        for (const e of u1) assert.equal(await store.get(A1, e.id), undefined);
        assert.deepEqual(await hybrid(A1, 'Lena phone', { includeSuperseded: true }), []);
        assert.deepEqual((await store.list({ scope: A1, limit: 10, includeSuperseded: true })).items, []);
        assert.deepEqual(ids(await hybrid(A, 'Lena')), [u2.id]);
        assert.deepEqual(ids(await hybrid({ tenantId: 'tenant-b' }, 'Lena')), [otherTenant.id]);
        assert.deepEqual(await store.erase(A1), []);
      });

      it('refuses memories and ops of an erased user made before the erasure, not newer ones', async () => {
        const gone = makeEntry({ text: 'Lena phone 555-0101' });
        await write([gone]);
        assert.deepEqual(await store.erase(A1), [gone.id]);
        // The stores run on the wall clock: the erasure is stamped at most now, so fixtures stamped at T0
        // (2025) were made before it, and a second from now is after it whatever the timer's resolution.
        const afterErasure = Date.now() + 1_000;
        const inFlight = makeEntry({ text: 'Lena address Rua Nova', ingestedAt: T0 + HOUR });
        const fresh = makeEntry({ text: 'Lena moved to Porto', ingestedAt: afterErasure });
        const otherUser = makeEntry({ userId: 'user-2', text: 'Lena is also mentioned here' });
        const otherTenant = makeEntry({ tenantId: 'tenant-b', text: 'Lena in tenant b' });
        assert.deepEqual(await write([inFlight, fresh, otherUser, otherTenant]), {
          inserted: 3,
          updated: 0,
          unchanged: 1,
        });
        assert.equal(await store.get(A1, inFlight.id), undefined);
        assert.equal((await store.get(A1, fresh.id))?.text, 'Lena moved to Porto');
        const listed = await store.list({ scope: A1, limit: 10, includeSuperseded: true });
        assert.deepEqual(
          listed.items.map((entry) => entry.id),
          [fresh.id],
        );
        assert.deepEqual(ids(await lexical(A1, 'Lena', { includeSuperseded: true })), [fresh.id]);
        assert.equal(
          (await store.get({ tenantId: 'tenant-a', userId: 'user-2' }, otherUser.id))?.id,
          otherUser.id,
        );
        assert.equal(
          (await store.get({ tenantId: 'tenant-b', userId: 'user-1' }, otherTenant.id))?.id,
          otherTenant.id,
        );

        const replacement = makeEntry({
          id: 'mem_lena_faro',
          text: 'Lena moved to Faro',
          ingestedAt: afterErasure,
        });
        const decidedBefore = makeOp({
          opId: 'op-decided-before-erasure',
          op: 'update',
          targetIds: [fresh.id],
          replacementIds: [replacement.id],
          replacements: [replacement],
          requestedAt: T0 + DAY,
        });
        const decidedAfter = makeOp({
          opId: 'op-decided-after-erasure',
          op: 'ignore',
          targetIds: [fresh.id],
          requestedAt: afterErasure,
        });
        assert.deepEqual(await store.applyOps([{ op: decidedBefore }, { op: decidedAfter }]), {
          applied: 1,
          stale: 1,
          duplicate: 0,
        });
        assert.equal((await store.get(A1, fresh.id))?.supersededBy, null);
        assert.equal(await store.get(A1, replacement.id), undefined);
        assert.deepEqual(
          [...(await store.recordedOps('tenant-a', [decidedBefore.opId, decidedAfter.opId]))],
          [decidedAfter.opId],
        );
      });

      it('an erase racing writes of the same user leaves none of what was made before it', async () => {
        // Each round: a batch made before the erasure (an indexer in flight) and the erasure, at once, with
        // the erasure started a little later or earlier each time, so that it lands between the write's
        // erased-users lookup and its write in some rounds.
        for (let round = 0; round < 12; round++) {
          const scope = { tenantId: 'tenant-a', userId: `racer-${round}` };
          const batch = [0, 1, 2, 3].map((i) =>
            makeEntry({ userId: scope.userId, text: `race ${round} fact ${i}`, ingestedAt: T0 + HOUR }),
          );
          await Promise.all([
            store.upsert(batch.map((entry) => ({ entry }))),
            delay(round % 4).then(() => store.erase(scope)),
          ]);
          const left = await store.list({ scope, limit: 10, includeSuperseded: true });
          assert.deepEqual(
            left.items.map((entry) => entry.text),
            [],
            `round ${round}: the erased user's memories came back`,
          );
        }
      });

      it('erases a conversation', async () => {
        const c1 = makeEntry({ conversationId: 'c-1', text: 'call about modem' });
        const c2 = makeEntry({ conversationId: 'c-2', text: 'chat about modem' });
        await write([c1, c2]);
        assert.deepEqual(await store.erase({ tenantId: 'tenant-a', conversationId: 'c-1' }), [c1.id]);
        assert.deepEqual(ids(await lexical(A1, 'modem')), [c2.id]);
      });

      it('refuses an erase without a user or conversation (scope_required)', async () => {
        await write([makeEntry()]);
        await expectCode(store.erase(A), 'scope_required');
        await expectCode(store.erase({ tenantId: 'tenant-a', agentId: 'agent-1' }), 'scope_required');
        assert.equal((await store.stats(A)).live, 1);
      });
    });

    describe('stats', () => {
      it('counts live and superseded memories per scope and reports the embedder', async () => {
        assert.deepEqual(await store.stats(A), { live: 0, superseded: 0, embedderId: null });
        const a = makeEntry({ text: 'one' });
        const b = makeEntry({ text: 'two' });
        const c = makeEntry({ userId: 'user-2', text: 'three' });
        const d = makeEntry({ tenantId: 'tenant-b', text: 'four' });
        await write([a, b, c, d], true);
        await store.supersede(A1, [a.id], b.id, T0);
        assert.deepEqual(await store.stats(A1), { live: 1, superseded: 1, embedderId: embedder.id });
        assert.deepEqual(await store.stats(A), { live: 2, superseded: 1, embedderId: embedder.id });
        assert.deepEqual(await store.stats(), { live: 3, superseded: 1, embedderId: embedder.id });
      });
    });
  });
}

/** Asserts that `promise` rejects with a LightmemError of `code`. */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof LightmemError, `expected a LightmemError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}
