import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MemoryEntry, MemoryOp } from '../../services/core/model/generated.js';
import type { Scope } from '../../services/core/model/scope.js';
import type { MemoryStore, OpWrite } from '../../services/core/ports/memory-store.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { DAY, HOUR, T0, embeddedWrites, makeEntry, makeOp } from '../support/memory-fixtures.js';
import { expectCode } from './memory-store.contract.js';
import { cosine } from '../../services/stages/segmenter/similarity-segmenter.js';

/**
 * Versions, decisions and consolidation reads of a MemoryStore (sleep-time consolidation): applyOps,
 * history, as-of search, nearest neighbours, stored vectors and the pending set. The SQLite and
 * Elasticsearch adapters run the same cases. `open` must return an empty store each time.
 */
export function memoryVersionsContract(name: string, open: () => Promise<MemoryStore>): void {
  describe(`MemoryStore versions contract: ${name}`, () => {
    let store: MemoryStore;
    const embedder = new HashingEmbedder(64);
    const A1: Scope = { tenantId: 'tenant-a', userId: 'user-1' };
    const A2: Scope = { tenantId: 'tenant-a', userId: 'user-2' };
    const B1: Scope = { tenantId: 'tenant-b', userId: 'user-1' };

    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    const stamp = (entry: MemoryEntry): MemoryEntry => ({
      ...entry,
      pipeline: { ...entry.pipeline, embedder: embedder.id },
    });
    const write = async (entries: MemoryEntry[]) => store.upsert(await embeddedWrites(embedder, entries));
    const opWrite = (op: MemoryOp): OpWrite => ({
      op,
      embeddings: op.replacements.map((entry) => embedder.embedOne(entry.text)),
    });
    const ids = (entries: readonly { id: string }[]) => entries.map((entry) => entry.id);
    const searchIds = async (scope: Scope, text: string, extra: { asOf?: number; all?: boolean } = {}) =>
      (
        await store.search({
          scope,
          text,
          limit: 10,
          vector: embedder.embedOne(text),
          embedderId: embedder.id,
          ...(extra.asOf === undefined ? {} : { asOf: extra.asOf }),
          ...(extra.all === true ? { includeSuperseded: true } : {}),
        })
      ).map((hit) => hit.memory.id);

    const op = makeOp;

    /** An old plan, a newer one that refines it, and the merged version an update writes. */
    function refinement() {
      const old = stamp(makeEntry({ text: 'Alice is on the basic plan', sourceTurnIds: ['t1'] }));
      const newer = stamp(
        makeEntry({
          text: 'Alice is on the basic plan with roaming',
          occurredAt: T0 + DAY,
          validFrom: T0 + DAY,
          sourceTurnIds: ['t9'],
        }),
      );
      const merged = stamp(
        makeEntry({
          id: 'mem_merged_1',
          text: 'Alice is on the basic plan, with roaming',
          validFrom: T0 + DAY,
          sourceTurnIds: ['t1', 't9'],
        }),
      );
      const update = op({
        opId: 'op_update_1',
        op: 'update',
        targetIds: [old.id],
        replacementIds: [merged.id],
        sourceIds: [newer.id],
        validTo: T0 + DAY,
        replacements: [merged],
      });
      return { old, newer, merged, update };
    }

    describe('applyOps', () => {
      it('update: writes the new version, closes the old one, keeps both, and applies once', async () => {
        const { old, newer, merged, update } = refinement();
        await write([old, newer]);
        assert.deepEqual(await store.applyOps([opWrite(update)]), { applied: 1, stale: 0, duplicate: 0 });
        const closed = await store.get(A1, old.id);
        assert.equal(closed?.validTo, T0 + DAY);
        assert.equal(closed?.supersededBy, merged.id);
        assert.deepEqual(await store.get(A1, merged.id), merged);
        assert.equal((await store.get(A1, newer.id))?.supersededBy, null, 'sources are not changed');
        assert.deepEqual((await searchIds(A1, 'basic plan')).sort(), [merged.id, newer.id].sort());

        assert.deepEqual(await store.applyOps([opWrite(update)]), { applied: 0, stale: 0, duplicate: 1 });
        assert.deepEqual(
          await store.recordedOps('tenant-a', ['op_update_1', 'op_other']),
          new Set(['op_update_1']),
        );
        assert.deepEqual(await store.recordedOps('tenant-b', ['op_update_1']), new Set());
        assert.equal((await store.stats(A1)).live, 2);
        assert.equal((await store.stats(A1)).superseded, 1);
      });

      it('supersede: closes the target and points it to the newer memory', async () => {
        const old = stamp(makeEntry({ text: 'Alice lives in New York' }));
        const newer = stamp(makeEntry({ text: 'Alice moved to San Francisco', occurredAt: T0 + DAY }));
        await write([old, newer]);
        const decision = op({
          opId: 'op_supersede_1',
          op: 'supersede',
          targetIds: [old.id],
          replacementIds: [newer.id],
          sourceIds: [newer.id],
          validTo: T0 + DAY,
        });
        assert.deepEqual(await store.applyOps([opWrite(decision)]), { applied: 1, stale: 0, duplicate: 0 });
        const closed = await store.get(A1, old.id);
        assert.equal(closed?.validTo, T0 + DAY);
        assert.equal(closed?.supersededBy, newer.id);
        assert.deepEqual(await searchIds(A1, 'Alice lives'), [newer.id]);
      });

      it('update with two targets merges them into one version (the LLM-free policy)', async () => {
        const a = stamp(makeEntry({ text: 'Bob likes green tea', sourceTurnIds: ['t1'] }));
        const b = stamp(
          makeEntry({ text: 'Bob likes green tea', occurredAt: T0 + HOUR, sourceTurnIds: ['t5'] }),
        );
        const merged = stamp(
          makeEntry({
            id: 'mem_merged_ab',
            text: 'Bob likes green tea',
            validFrom: T0 + HOUR,
            sourceTurnIds: ['t1', 't5'],
          }),
        );
        await write([a, b]);
        const merge = op({
          opId: 'op_merge_1',
          op: 'update',
          targetIds: [a.id, b.id],
          replacementIds: [merged.id],
          sourceIds: [b.id],
          validTo: T0 + HOUR,
          replacements: [merged],
        });
        assert.deepEqual(await store.applyOps([opWrite(merge)]), { applied: 1, stale: 0, duplicate: 0 });
        assert.deepEqual(await searchIds(A1, 'green tea'), [merged.id]);
        assert.deepEqual((await store.get(A1, merged.id))?.sourceTurnIds, ['t1', 't5']);
        for (const id of [a.id, b.id]) assert.equal((await store.get(A1, id))?.supersededBy, merged.id);
      });

      it('ignore is recorded and changes nothing', async () => {
        const a = stamp(makeEntry({ text: 'Carol has a dog' }));
        await write([a]);
        const ignore = op({ opId: 'op_ignore_1', op: 'ignore', targetIds: [a.id], sourceIds: ['mem_x'] });
        assert.deepEqual(await store.applyOps([opWrite(ignore)]), { applied: 1, stale: 0, duplicate: 0 });
        assert.deepEqual(await store.get(A1, a.id), a);
        assert.deepEqual(await store.recordedOps('tenant-a', ['op_ignore_1']), new Set(['op_ignore_1']));
      });

      it('records an op on a closed or foreign target as stale and changes nothing', async () => {
        const { old, newer, update } = refinement();
        const foreign = stamp(makeEntry({ tenantId: 'tenant-b', text: 'Alice is on the basic plan' }));
        const otherUser = stamp(makeEntry({ userId: 'user-2', text: 'Alice is on the basic plan' }));
        await write([old, newer, foreign, otherUser]);
        await store.applyOps([opWrite(update)]);
        const again = op({
          opId: 'op_supersede_closed',
          op: 'supersede',
          targetIds: [old.id],
          replacementIds: [newer.id],
          validTo: T0 + 2 * DAY,
        });
        const crossTenant = op({
          opId: 'op_cross_tenant',
          op: 'supersede',
          targetIds: [foreign.id],
          replacementIds: [newer.id],
          validTo: T0 + 2 * DAY,
        });
        const crossUser = op({
          opId: 'op_cross_user',
          op: 'supersede',
          targetIds: [otherUser.id],
          replacementIds: [newer.id],
          validTo: T0 + 2 * DAY,
        });
        assert.deepEqual(await store.applyOps([again, crossTenant, crossUser].map(opWrite)), {
          applied: 0,
          stale: 3,
          duplicate: 0,
        });
        assert.equal((await store.get(A1, old.id))?.validTo, T0 + DAY, 'the first decision stands');
        assert.deepEqual(await store.get(B1, foreign.id), foreign);
        assert.deepEqual(await store.get(A2, otherUser.id), otherUser);
      });

      it('rejects an op whose replacement is in another scope (invalid_input)', async () => {
        const { old, newer, merged, update } = refinement();
        await write([old, newer]);
        const moved = { ...merged, tenantId: 'tenant-b' };
        await expectCode(store.applyOps([opWrite({ ...update, replacements: [moved] })]), 'invalid_input');
        assert.equal((await store.get(A1, old.id))?.supersededBy, null);
      });
    });

    describe('as-of reads and history', () => {
      it('hides a superseded version by default, returns it as of before the change and with includeSuperseded', async () => {
        const { old, newer, merged, update } = refinement();
        await write([old, newer]);
        await store.applyOps([opWrite(update)]);
        assert.ok(!(await searchIds(A1, 'basic plan')).includes(old.id));
        const before = await searchIds(A1, 'basic plan', { asOf: T0 + HOUR });
        assert.deepEqual(before, [old.id], 'as of then: the old version only (the newer ones start later)');
        const after = await searchIds(A1, 'basic plan', { asOf: T0 + 2 * DAY });
        assert.deepEqual(after.sort(), [merged.id, newer.id].sort());
        assert.deepEqual(
          (await searchIds(A1, 'basic plan', { all: true })).sort(),
          [old.id, newer.id, merged.id].sort(),
        );
        assert.deepEqual(await searchIds(A1, 'basic plan', { asOf: T0 - DAY }), [], 'nothing was valid yet');
      });

      it('lists every version of a memory with the decisions, from either end', async () => {
        const { old, newer, merged, update } = refinement();
        await write([old, newer]);
        await store.applyOps([opWrite(update)]);
        const newest = stamp(
          makeEntry({ text: 'Alice switched to the premium plan', occurredAt: T0 + 5 * DAY }),
        );
        await write([newest]);
        await sleep(5); // applied later: history lists ops by when they were applied
        const supersede = op({
          opId: 'op_supersede_2',
          op: 'supersede',
          targetIds: [merged.id],
          replacementIds: [newest.id],
          sourceIds: [newest.id],
          validTo: T0 + 5 * DAY,
        });
        await store.applyOps([opWrite(supersede)]);
        for (const id of [old.id, merged.id]) {
          const history = await store.history(A1, id);
          assert.ok(history !== undefined);
          assert.deepEqual(ids(history.versions), [old.id, merged.id]);
          assert.deepEqual(
            history.ops.map((recorded) => [recorded.op.opId, recorded.outcome]),
            [
              ['op_update_1', 'applied'],
              ['op_supersede_2', 'applied'],
            ],
          );
          assert.deepEqual(history.ops[0]?.op.sourceIds, [newer.id]);
        }
        const lonely = await store.history(A1, newer.id);
        assert.deepEqual(ids(lonely?.versions ?? []), [newer.id]);
        assert.equal(await store.history(B1, old.id), undefined, 'another tenant sees nothing');
        assert.equal(await store.history(A1, 'mem_missing'), undefined);
      });
    });

    describe('consolidation reads', () => {
      it('nearest: live memories of the user only, at or before a time, with cosine similarity', async () => {
        const a = stamp(makeEntry({ text: 'Dana flies to Lisbon in May' }));
        const b = stamp(makeEntry({ text: 'Dana flies to Lisbon in June', occurredAt: T0 + DAY }));
        const later = stamp(makeEntry({ text: 'Dana flies to Lisbon in July', occurredAt: T0 + 3 * DAY }));
        const closed = stamp(makeEntry({ text: 'Dana flies to Lisbon', occurredAt: T0 - DAY }));
        const otherUser = stamp(makeEntry({ userId: 'user-2', text: 'Dana flies to Lisbon in June' }));
        const otherTenant = stamp(makeEntry({ tenantId: 'tenant-b', text: 'Dana flies to Lisbon in June' }));
        await write([a, b, later, closed, otherUser, otherTenant]);
        await store.supersede(A1, [closed.id], b.id, T0);
        const query = embedder.embedOne(b.text);
        const [near, none] = await store.nearest([
          { scope: A1, vector: query, embedderId: embedder.id, k: 10, occurredAtMost: b.occurredAt },
          { scope: { tenantId: 'tenant-c', userId: 'user-1' }, vector: query, embedderId: embedder.id, k: 5 },
        ]);
        assert.deepEqual(ids((near ?? []).map((n) => n.memory)), [b.id, a.id]);
        assert.ok(Math.abs((near?.[0]?.similarity ?? 0) - 1) < 1e-3, 'itself: cosine 1');
        const expected = cosine(query, embedder.embedOne(a.text));
        assert.ok(Math.abs((near?.[1]?.similarity ?? 0) - expected) < 1e-3);
        assert.deepEqual(none, []);
        await expectCode(
          store.nearest([{ scope: { tenantId: 'tenant-a' }, vector: query, embedderId: embedder.id, k: 5 }]),
          'scope_required',
        );
      });

      it('embeddings: the stored vectors, within the scope', async () => {
        const a = stamp(makeEntry({ text: 'Erin collects stamps' }));
        const foreign = stamp(makeEntry({ tenantId: 'tenant-b', text: 'Erin collects coins' }));
        await write([a, foreign]);
        const vectors = await store.embeddings(A1, [a.id, foreign.id, 'mem_missing']);
        assert.deepEqual([...vectors.keys()], [a.id]);
        assert.ok(cosine(vectors.get(a.id) ?? new Float32Array(64), embedder.embedOne(a.text)) > 0.999);
      });

      it('pending: new current memories until marked, per user; versions from ops are not pending', async () => {
        const { old, newer, merged, update } = refinement();
        const otherUser = stamp(makeEntry({ userId: 'user-2', text: 'Frank plays chess' }));
        const otherTenant = stamp(makeEntry({ tenantId: 'tenant-b', text: 'Frank plays chess' }));
        await write([newer, old, otherUser, otherTenant]);
        assert.deepEqual(ids(await store.pendingConsolidation(A1, 10)), [old.id, newer.id]);
        assert.deepEqual(ids(await store.pendingConsolidation(A1, 1)), [old.id]);
        assert.deepEqual(
          (await store.pendingUsers()).map((u) => [u.tenantId, u.userId, u.pending]),
          [
            ['tenant-a', 'user-1', 2],
            ['tenant-a', 'user-2', 1],
            ['tenant-b', 'user-1', 1],
          ],
        );
        assert.deepEqual(
          (await store.pendingUsers('tenant-b')).map((u) => u.userId),
          ['user-1'],
        );
        assert.equal(await store.markConsolidated(A1, [old.id, otherTenant.id], T0 + 10 * DAY), 1);
        assert.deepEqual(ids(await store.pendingConsolidation(A1, 10)), [newer.id]);
        await store.applyOps([opWrite(update)]);
        assert.deepEqual(ids(await store.pendingConsolidation(A1, 10)), [newer.id], 'merged is not pending');
        assert.equal(await store.markConsolidated(A1, [newer.id], T0 + 10 * DAY), 1);
        assert.deepEqual(await store.pendingConsolidation(A1, 10), []);
        await write([newer]);
        assert.deepEqual(
          await store.pendingConsolidation(A1, 10),
          [],
          'an unchanged rewrite stays consolidated',
        );
        assert.deepEqual(ids(await store.pendingConsolidation(B1, 10)), [otherTenant.id]);
        assert.ok((await store.get(A1, merged.id)) !== undefined);
        await expectCode(store.pendingConsolidation({ tenantId: 'tenant-a' }, 10), 'scope_required');
      });
    });
  });
}
