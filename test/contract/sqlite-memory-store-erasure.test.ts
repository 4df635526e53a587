import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import { openDatabase } from '../../services/adapters/sqlite/database.js';
import type { MemoryEntry, MemoryOp } from '../../services/core/model/generated.js';
import type { OpWrite } from '../../services/core/ports/memory-store.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { DAY, T0, embeddedWrites, makeEntry, makeOp } from '../support/memory-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-store-erasure-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const embedder = new HashingEmbedder(64);
const A1 = { tenantId: 'tenant-a', userId: 'user-1' };
const A2 = { tenantId: 'tenant-a', userId: 'user-2' };
/** The store's "now": when it records an erasure. */
const erasedAt = T0 + 100 * DAY;

function count(file: string, sql: string, ...params: unknown[]): number {
  const db = openDatabase(file, { vectors: true, readonly: true });
  try {
    return Number(
      db
        .prepare(sql)
        .pluck()
        .get(...params),
    );
  } finally {
    db.close();
  }
}

async function openWithHistory(): Promise<{ file: string; store: SqliteMemoryStore; old: MemoryEntry }> {
  const file = join(dir, `store-${++files}.db`);
  const store = SqliteMemoryStore.open(file, { clock: { now: () => erasedAt } });
  const old = makeEntry({ ...A1, text: 'Lena lives at Rua Nova 5' });
  const newer = makeEntry({ ...A1, text: 'Lena moved to Rua Velha 9', occurredAt: T0 + DAY });
  const merged = makeEntry({
    ...A1,
    id: 'merged-1',
    text: 'Lena lives at Rua Velha 9 now',
    occurredAt: T0 + DAY,
  });
  const others = [makeEntry({ ...A2, text: 'Otto lives in Porto' })];
  await store.upsert(await embeddedWrites(embedder, [old, newer, ...others]));
  const update = makeOp({
    ...A1,
    opId: 'op-1',
    op: 'update',
    targetIds: [old.id],
    replacementIds: [merged.id],
    sourceIds: [newer.id],
    replacements: [{ ...merged, pipeline: { ...merged.pipeline, embedder: embedder.id } }],
  });
  // A tenant-wide op (no user) about the user's memory: its replacements hold the user's text too.
  const tenantWide = makeOp({ ...A1, userId: null, opId: 'op-2', op: 'ignore', targetIds: [newer.id] });
  const other = makeOp({ ...A2, opId: 'op-3', op: 'ignore', targetIds: [others[0]?.id ?? ''] });
  const result = await store.applyOps([update, tenantWide, other].map(opWrite));
  assert.deepEqual(result, { applied: 3, stale: 0, duplicate: 0 });
  return { file, store, old };
}

function opWrite(op: MemoryOp): OpWrite {
  return { op, embeddings: op.replacements.map((entry) => embedder.embedOne(entry.text)) };
}

describe('SqliteMemoryStore erasure of a user', () => {
  it('removes every version, vector, full-text row, op, op link and pending mark of the user', async () => {
    const { file, store, old } = await openWithHistory();
    try {
      assert.equal(
        (await store.pendingConsolidation(A1, 10)).length,
        1,
        'the newer one waits for consolidation',
      );
      const erased = await store.erase(A1);
      assert.equal(erased.length, 3, 'the two versions and the merged one');
      const userRows = (table: string) =>
        count(
          file,
          `SELECT COUNT(*) FROM ${table} WHERE tenant_id = ? AND user_id = ?`,
          A1.tenantId,
          A1.userId,
        );
      assert.equal(userRows('memories'), 0);
      assert.equal(userRows('memory_vectors'), 0);
      assert.equal(count(file, 'SELECT COUNT(*) FROM memory_vectors'), 1);
      assert.equal(count(file, `SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH 'Lena'`), 0);
      assert.equal(count(file, `SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH 'Otto'`), 1);
      assert.deepEqual(
        [...(await store.recordedOps('tenant-a', ['op-1', 'op-2', 'op-3']))],
        ['op-3'],
        "the user's ops and the tenant-wide op about the user's memory are gone; the other user's stays",
      );
      assert.equal(count(file, `SELECT COUNT(*) FROM memory_ops WHERE instr(op, 'Lena') > 0`), 0);
      assert.equal(count(file, `SELECT COUNT(*) FROM memory_op_links WHERE memory_id = ?`, old.id), 0);
      assert.equal(count(file, 'SELECT COUNT(*) FROM memory_op_links'), 1);
      assert.deepEqual(await store.pendingConsolidation(A1, 10), []);
      assert.equal(await store.history(A1, old.id), undefined);
      assert.deepEqual(await store.erase(A1), [], 'again: nothing left');
    } finally {
      await store.close();
    }
  });

  it('refuses memories and ops of the user made before the erasure (work in flight), not newer ones', async () => {
    const { store, old } = await openWithHistory();
    try {
      await store.erase(A1);
      const stale = makeEntry({ ...A1, text: 'extracted before the erasure', ingestedAt: erasedAt - 1 });
      const fresh = makeEntry({ ...A1, text: 'said after the erasure', ingestedAt: erasedAt + 1 });
      const otherUser = makeEntry({ ...A2, text: 'not erased', ingestedAt: erasedAt - 1 });
      assert.deepEqual(await store.upsert([stale, fresh, otherUser].map((entry) => ({ entry }))), {
        inserted: 2,
        updated: 0,
        unchanged: 1,
      });
      assert.equal(await store.get(A1, stale.id), undefined);
      assert.equal((await store.get(A1, fresh.id))?.text, 'said after the erasure');

      const decidedBefore = makeOp({
        ...A1,
        opId: 'op-4',
        op: 'ignore',
        targetIds: [fresh.id],
        requestedAt: erasedAt,
      });
      const aboutErased = makeOp({
        ...A1,
        opId: 'op-5',
        op: 'update',
        targetIds: [old.id],
        replacementIds: ['r-5'],
        requestedAt: erasedAt + 5,
        replacements: [makeEntry({ ...A1, id: 'r-5', text: 'Lena again', ingestedAt: erasedAt + 5 })],
      });
      const decidedAfter = makeOp({
        ...A1,
        opId: 'op-6',
        op: 'ignore',
        targetIds: [fresh.id],
        requestedAt: erasedAt + 1,
      });
      assert.deepEqual(await store.applyOps([decidedBefore, aboutErased, decidedAfter].map(opWrite)), {
        applied: 1,
        stale: 2,
        duplicate: 0,
      });
      assert.deepEqual([...(await store.recordedOps('tenant-a', ['op-4', 'op-5', 'op-6']))], ['op-6']);
    } finally {
      await store.close();
    }
  });

  it('erasing one conversation removes its memories and linked ops but fences nobody', async () => {
    const { store } = await openWithHistory();
    try {
      await store.erase({ ...A1, conversationId: 'conv-1' });
      const entry = makeEntry({ ...A1, text: 'old but welcome', ingestedAt: T0 });
      assert.equal((await store.upsert([{ entry }])).inserted, 1);
    } finally {
      await store.close();
    }
  });
});
