import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { migrate, openDatabase } from '../../services/adapters/sqlite/database.js';
import { MEMORY_MIGRATIONS } from '../../services/adapters/sqlite/memory-schema.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import type { MemoryWrite, SearchRequest } from '../../services/core/ports/memory-store.js';
import type { Scope } from '../../services/core/model/scope.js';
import {
  SCALE_EMBEDDER,
  Vocabulary,
  nearVector,
  questionText,
  seededRandom,
  syntheticWrite,
  turnText,
  unitVector,
} from '../../services/bench/scale-corpus.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-partitions-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const tempFile = () => join(dir, `store-${++files}.db`);

const DIMS = 16;
const vocabulary = new Vocabulary(2_000);

/** `perUser` seeded memories for each (tenant, user). */
function corpus(users: readonly (readonly [string, string])[], perUser: number): MemoryWrite[] {
  const writes: MemoryWrite[] = [];
  for (const [u, [tenantId, userId]] of users.entries()) {
    const random = seededRandom(1_000 + u);
    for (let i = 0; i < perUser; i++) {
      writes.push(
        syntheticWrite(tenantId, userId, i, turnText(vocabulary, random), unitVector(DIMS, random)),
      );
    }
  }
  return writes;
}

/** Lexical, vector-only and hybrid searches about some of the written memories. */
function requests(writes: readonly MemoryWrite[], scopeOf: (write: MemoryWrite) => Scope): SearchRequest[] {
  const random = seededRandom(99);
  const out: SearchRequest[] = [];
  for (let q = 0; q < 12; q++) {
    const write = writes[Math.floor(random() * writes.length)];
    if (write?.embedding === undefined) continue;
    const scope = scopeOf(write);
    const text = questionText(write.entry.text, vocabulary, random);
    const vector = nearVector(write.embedding, random);
    out.push({ scope, text, limit: 10 });
    out.push({ scope, text: '', vector, embedderId: SCALE_EMBEDDER, limit: 10 });
    out.push({ scope, text, vector, embedderId: SCALE_EMBEDDER, limit: 10 });
  }
  return out;
}

async function answers(store: SqliteMemoryStore, reqs: readonly SearchRequest[]) {
  const out = [];
  for (const request of reqs) {
    const hits = await store.search(request);
    out.push(hits.map((hit) => ({ id: hit.memory.id, score: hit.score, semantic: hit.semantic })));
  }
  return out;
}

/** The vector table as the stores before schema version 6 created it. */
const OLD_VECTOR_TABLE = `CREATE VIRTUAL TABLE memory_vectors USING vec0(
    tenant_id TEXT PARTITION KEY,
    user_id TEXT,
    agent_id TEXT,
    conversation_id TEXT,
    session_id TEXT,
    occurred_at INTEGER,
    superseded INTEGER,
    embedding float[${DIMS}] distance_metric=cosine
  )`;
const COLUMNS =
  'tenant_id, user_id, agent_id, conversation_id, session_id, occurred_at, superseded, embedding';

const vectorTableSql = (file: string): string => {
  const db = openDatabase(file, { vectors: true, readonly: true });
  try {
    const sql: unknown = db
      .prepare(`SELECT sql FROM sqlite_master WHERE name = 'memory_vectors'`)
      .pluck()
      .get();
    return typeof sql === 'string' ? sql : '';
  } finally {
    db.close();
  }
};

describe('SqliteMemoryStore vector partitions', () => {
  it('migrates a store of the old vector layout in place: same rowids, same search results', async () => {
    const users = [
      ['tenant-a', 'user-1'],
      ['tenant-a', 'user-2'],
      ['tenant-b', 'user-1'],
    ] as const;
    const writes = corpus(users, 60);
    const reqs = [
      ...requests(writes, (w) => ({ tenantId: w.entry.tenantId, userId: w.entry.userId })),
      ...requests(writes, (w) => ({ tenantId: w.entry.tenantId })),
    ];
    const file = tempFile();
    const fresh = SqliteMemoryStore.open(file);
    await fresh.upsert(writes);
    await fresh.supersede(
      { tenantId: 'tenant-a' },
      [writes[3]?.entry.id ?? ''],
      writes[4]?.entry.id ?? '',
      1,
    );
    const expected = await answers(fresh, reqs);
    await fresh.close();
    assert.match(vectorTableSql(file), /user_id TEXT PARTITION KEY/);

    // Back to the layout of schema version 5, rows and rowids kept.
    const db = openDatabase(file, { vectors: true });
    const before = db.prepare('SELECT rowid, user_id, superseded FROM memory_vectors ORDER BY rowid').all();
    db.exec(`
      CREATE TEMP TABLE copy AS SELECT rowid AS rid, ${COLUMNS} FROM memory_vectors;
      DROP TABLE memory_vectors;
      ${OLD_VECTOR_TABLE};
      INSERT INTO memory_vectors (rowid, ${COLUMNS}) SELECT rid, ${COLUMNS} FROM copy;
      DROP TABLE copy;
    `);
    db.pragma('user_version = 5');
    db.close();
    assert.doesNotMatch(vectorTableSql(file), /user_id TEXT PARTITION KEY/);

    const migrated = SqliteMemoryStore.open(file);
    try {
      assert.deepEqual(await answers(migrated, reqs), expected);
      assert.equal(expected.filter((hits) => hits.length > 0).length, expected.length);
      assert.ok(expected.some((hits) => hits.some((hit) => hit.semantic !== null)));
    } finally {
      await migrated.close();
    }
    assert.match(vectorTableSql(file), /user_id TEXT PARTITION KEY/);
    const check = openDatabase(file, { vectors: true, readonly: true });
    try {
      assert.equal(check.pragma('user_version', { simple: true }), MEMORY_MIGRATIONS.length);
      assert.deepEqual(
        check.prepare('SELECT rowid, user_id, superseded FROM memory_vectors ORDER BY rowid').all(),
        before,
      );
    } finally {
      check.close();
    }
  });

  it('migrates a store that has no vector table yet; the first embedding creates the new layout', async () => {
    const file = tempFile();
    const old = openDatabase(file, { vectors: true });
    migrate(old, MEMORY_MIGRATIONS.slice(0, 5));
    old.close();
    const store = SqliteMemoryStore.open(file);
    try {
      assert.equal(vectorTableSql(file), '');
      await store.upsert(corpus([['tenant-a', 'user-1']], 5));
      assert.match(vectorTableSql(file), /user_id TEXT PARTITION KEY/);
    } finally {
      await store.close();
    }
  });

  it('confines kNN to the user, and a tenant-wide scope to the tenant', async () => {
    const store = SqliteMemoryStore.open(':memory:');
    try {
      // The same user id in two tenants, and two users of one tenant.
      const writes = corpus(
        [
          ['tenant-a', 'user-1'],
          ['tenant-a', 'user-2'],
          ['tenant-b', 'user-1'],
        ],
        20,
      );
      await store.upsert(writes);
      const idsOf = (tenantId: string, userId?: string) =>
        writes
          .filter((w) => w.entry.tenantId === tenantId && (userId === undefined || w.entry.userId === userId))
          .map((w) => w.entry.id)
          .sort();
      const vectorSearch = async (scope: Scope, vector: Float32Array, limit: number) =>
        (await store.search({ scope, text: '', vector, embedderId: SCALE_EMBEDDER, limit }))
          .map((hit) => hit.memory.id)
          .sort();
      // The sum of the scope's vectors: close to many of them.
      const probe = (tenantId: string, userId?: string): Float32Array => {
        const sum = new Float32Array(DIMS);
        for (const w of writes) {
          if (w.entry.tenantId !== tenantId || (userId !== undefined && w.entry.userId !== userId)) continue;
          w.embedding?.forEach((value, i) => (sum[i] = (sum[i] ?? 0) + value));
        }
        return sum;
      };
      for (const [tenantId, userId] of [
        ['tenant-a', 'user-1'],
        ['tenant-a', 'user-2'],
        ['tenant-b', 'user-1'],
      ] as const) {
        const found = await vectorSearch({ tenantId, userId }, probe(tenantId, userId), 100);
        for (const id of found)
          assert.ok(idsOf(tenantId, userId).includes(id), `${id} leaked into ${userId}`);
        assert.ok(found.length > 0);
        // A query aimed at another user's memory still only finds this user's.
        const other = writes.find((w) => w.entry.tenantId !== tenantId || w.entry.userId !== userId);
        assert.ok(other?.embedding);
        for (const id of await vectorSearch({ tenantId, userId }, other.embedding, 100)) {
          assert.ok(idsOf(tenantId, userId).includes(id));
        }
      }
      // Tenant-wide (no user): every user of the tenant, no other tenant.
      const target = writes.find((w) => w.entry.tenantId === 'tenant-a' && w.entry.userId === 'user-2');
      assert.ok(target?.embedding);
      const tenantWide = await vectorSearch({ tenantId: 'tenant-a' }, target.embedding, 100);
      assert.ok(tenantWide.includes(target.entry.id));
      for (const id of tenantWide) assert.ok(idsOf('tenant-a').includes(id), `${id} leaked across tenants`);
      const users = new Set(
        tenantWide.map((id) => writes.find((w) => w.entry.id === id)?.entry.userId ?? 'none'),
      );
      assert.deepEqual([...users].sort(), ['user-1', 'user-2']);
      // Tenant-wide with a narrower field but no user (a conversation of user-2).
      const inConversation = await vectorSearch(
        { tenantId: 'tenant-a', conversationId: target.entry.conversationId },
        target.embedding,
        100,
      );
      assert.ok(inConversation.includes(target.entry.id));
      for (const id of inConversation) {
        assert.equal(
          writes.find((w) => w.entry.id === id)?.entry.conversationId,
          target.entry.conversationId,
        );
      }
      // nearest() stays within the user too.
      const [neighbours] = await store.nearest([
        {
          scope: { tenantId: 'tenant-b', userId: 'user-1' },
          vector: target.embedding,
          embedderId: SCALE_EMBEDDER,
          k: 50,
        },
      ]);
      assert.ok(neighbours !== undefined && neighbours.length > 0);
      for (const n of neighbours) assert.ok(idsOf('tenant-b', 'user-1').includes(n.memory.id));
    } finally {
      await store.close();
    }
  });

  it('keeps lexical results exact when the time range filters out most of the best matches', async () => {
    const store = SqliteMemoryStore.open(':memory:');
    try {
      const random = seededRandom(5);
      const writes = Array.from({ length: 400 }, (_, i) =>
        syntheticWrite(
          'tenant-a',
          'user-1',
          i,
          `kiwi ${turnText(vocabulary, random)}`,
          unitVector(DIMS, random),
        ),
      );
      await store.upsert(writes);
      const scope = { tenantId: 'tenant-a', userId: 'user-1' };
      // Only the last 60 memories are in range: the best 100 FTS matches (what a limit of 10 ranks first)
      // hold few of them, so the lexical side must look further, and find what ranking all of them finds.
      const from = writes[340]?.entry.occurredAt ?? 0;
      const top10 = await store.search({ scope, text: 'kiwi', limit: 10, timeRange: { from } });
      const top100 = await store.search({ scope, text: 'kiwi', limit: 100, timeRange: { from } });
      assert.equal(top100.length, 60);
      assert.deepEqual(
        top10.map((hit) => [hit.memory.id, hit.score]),
        top100.slice(0, 10).map((hit) => [hit.memory.id, hit.score]),
      );
      const unfiltered = await store.search({ scope, text: 'kiwi', limit: 100 });
      assert.ok(unfiltered.filter((hit) => hit.memory.occurredAt >= from).length < 30);
    } finally {
      await store.close();
    }
  });
});
