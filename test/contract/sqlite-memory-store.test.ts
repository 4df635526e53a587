import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { migrate, openDatabase } from '../../services/adapters/sqlite/database.js';
import { MEMORY_MIGRATIONS } from '../../services/adapters/sqlite/memory-schema.js';
import { queryTerms } from '../../services/adapters/memory/query-terms.js';
import {
  buildMatchExpression,
  scopeMatchTokens,
  scopeTokens,
} from '../../services/adapters/sqlite/fts-query.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import type { Scope } from '../../services/core/model/scope.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { embeddedWrites, makeEntry, plainWrites } from '../support/memory-fixtures.js';
import { memoryStoreOptionsContract } from './memory-store-options.contract.js';
import { expectCode, memoryStoreContract } from './memory-store.contract.js';
import { memoryVersionsContract } from './memory-versions.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-memory-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const tempFile = () => join(dir, `store-${++files}.db`);

memoryStoreContract('sqlite :memory:', async () => SqliteMemoryStore.open(':memory:'));
memoryStoreContract('sqlite file', async () => SqliteMemoryStore.open(tempFile()));
memoryVersionsContract('sqlite :memory:', async () => SqliteMemoryStore.open(':memory:'));
memoryVersionsContract('sqlite file', async () => SqliteMemoryStore.open(tempFile()));
memoryStoreOptionsContract('sqlite :memory:', async (options) => SqliteMemoryStore.open(':memory:', options));

const embedder = new HashingEmbedder(64);
const A1: Scope = { tenantId: 'tenant-a', userId: 'user-1' };

/** A second, raw connection to inspect what the store wrote. */
function inspect<T>(file: string, read: (db: ReturnType<typeof openDatabase>) => T): T {
  const db = openDatabase(file, { vectors: true, readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}
const count = (file: string, sql: string, ...params: unknown[]): number =>
  inspect(file, (db) =>
    Number(
      db
        .prepare(sql)
        .pluck()
        .get(...params),
    ),
  );

describe('SqliteMemoryStore', () => {
  it('persists memories, vectors and the embedder across a reopen', async () => {
    const file = tempFile();
    const entry = makeEntry({ text: 'Nadia renewed the fiber contract.' });
    const store = SqliteMemoryStore.open(file);
    await store.upsert(await embeddedWrites(embedder, [entry]));
    await store.close();

    const reopened = SqliteMemoryStore.open(file);
    try {
      const stored = await reopened.get(A1, entry.id);
      assert.equal(stored?.text, entry.text);
      assert.equal((await reopened.stats()).embedderId, embedder.id);
      const hits = await reopened.search({
        scope: A1,
        text: '',
        vector: embedder.embedOne('fiber contract renewed'),
        embedderId: embedder.id,
        limit: 3,
      });
      assert.deepEqual(
        hits.map((h) => h.memory.id),
        [entry.id],
      );
      assert.deepEqual(await reopened.upsert(await embeddedWrites(embedder, [entry])), {
        inserted: 0,
        updated: 0,
        unchanged: 1,
      });
      await expectCode(
        reopened.upsert(await embeddedWrites(new HashingEmbedder(16), [makeEntry({ text: 'x' })])),
        'model_mismatch',
      );
    } finally {
      await reopened.close();
    }
    assert.equal(
      inspect(file, (db) => db.pragma('user_version', { simple: true })),
      MEMORY_MIGRATIONS.length,
    );
  });

  it('upgrades a version-1 store in place: old rows read with sourceText null; new rows are found by their source text', async () => {
    const file = join(dir, 'v1.db');
    const old = openDatabase(file, { vectors: true });
    migrate(old, MEMORY_MIGRATIONS.slice(0, 1));
    old.close();
    const store = SqliteMemoryStore.open(file);
    try {
      const compressed = makeEntry({
        text: 'Ana booked flight Lisbon.',
        sourceText: 'Ana booked the early flight to Lisbon for the sales kickoff.',
      });
      const plain = makeEntry({ text: 'Ana paid the invoice.' });
      await store.upsert(plainWrites([compressed, plain]));
      const scope = { tenantId: compressed.tenantId, userId: compressed.userId };
      const hits = await store.search({ scope, text: 'sales kickoff', limit: 5 });
      assert.deepEqual(
        hits.map((h) => h.memory.id),
        [compressed.id],
        'matched on words only the source text has',
      );
      assert.equal(hits[0]?.memory.text, 'Ana booked flight Lisbon.', 'the prompt text stays compressed');
      assert.equal(hits[0]?.memory.sourceText, compressed.sourceText);
      assert.equal((await store.get(scope, plain.id))?.sourceText, null);
    } finally {
      await store.close();
    }
    assert.equal(
      inspect(file, (db) => db.pragma('user_version', { simple: true })),
      MEMORY_MIGRATIONS.length,
    );
  });

  it('creates the vector table on the first embedding and records the embedder in meta', async () => {
    const file = tempFile();
    const store = SqliteMemoryStore.open(file);
    const vectorTables = () =>
      count(file, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'memory_vectors'`);
    await store.upsert(plainWrites([makeEntry({ text: 'no vector yet' })]));
    assert.equal(vectorTables(), 0);
    await store.upsert(await embeddedWrites(embedder, [makeEntry({ text: 'now with a vector' })]));
    assert.equal(vectorTables(), 1);
    const meta = inspect(file, (db) => db.prepare('SELECT key, value FROM meta ORDER BY key').all());
    assert.deepEqual(meta, [
      { key: 'embedder_dims', value: '64' },
      { key: 'embedder_id', value: embedder.id },
    ]);
    assert.equal(count(file, 'SELECT COUNT(*) FROM memory_vectors'), 1);
    await store.close();
  });

  it('writes nothing from a batch that fails part-way, including the vector table', async () => {
    const file = tempFile();
    const store = SqliteMemoryStore.open(file);
    const good = await embeddedWrites(embedder, [
      makeEntry({ text: 'good one' }),
      makeEntry({ text: 'good two' }),
    ]);
    const bad = await embeddedWrites(new HashingEmbedder(32), [makeEntry({ text: 'bad' })]);
    await expectCode(store.upsert([...good, ...bad]), 'model_mismatch');
    assert.equal(count(file, 'SELECT COUNT(*) FROM memories'), 0);
    assert.equal(count(file, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'memory_vectors'`), 0);
    assert.deepEqual(await store.stats(), { live: 0, superseded: 0, embedderId: null });
    // The store is still usable, and the rolled-back table can be created again (by either embedder).
    assert.deepEqual(await store.upsert(bad), { inserted: 1, updated: 0, unchanged: 0 });
    assert.equal((await store.stats()).embedderId, 'test-hashing-32');
    await store.close();
  });

  it('erase removes the FTS and vector rows, not only the memories', async () => {
    const file = tempFile();
    const store = SqliteMemoryStore.open(file);
    const gone = makeEntry({ text: 'Otto quasar secret' });
    const kept = makeEntry({ userId: 'user-2', text: 'Otto kept memory' });
    await store.upsert(await embeddedWrites(embedder, [gone, kept]));
    assert.deepEqual(await store.erase(A1), [gone.id]);
    const fts = (word: string) =>
      count(file, 'SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH ?', word);
    assert.equal(fts('quasar'), 0);
    assert.equal(fts('otto'), 1);
    assert.equal(count(file, 'SELECT COUNT(*) FROM memory_vectors'), 1);
    assert.equal(count(file, 'SELECT COUNT(*) FROM memories'), 1);
    await store.close();
  });

  it('refuses calls after close', async () => {
    const store = SqliteMemoryStore.open(':memory:');
    await store.close();
    await store.close();
    await expectCode(store.stats(), 'storage_unavailable');
  });
});

describe('FTS query building', () => {
  const scope: Scope = { tenantId: 'tenant-a', userId: 'user-1' };
  const allowed =
    /^\(\{text speaker\}: \((?:"[\p{L}\p{N}\p{M}]+"(?: OR )?)+\)\)(?: AND scope: "[tucas][0-9a-f]{20}0")+$/u;

  it('keeps only quoted words from hostile text', () => {
    const hostile = [
      'zebra" OR "alpha',
      '{text speaker scope}: * NEAR(a b, 1) ^x -y',
      "'); DROP TABLE memories; --",
      'scope: "t0000" AND tenant_id = 1',
      'naïve café Ölçü 東京 ١٢٣',
    ];
    for (const text of hostile) {
      const match = buildMatchExpression(text, scope);
      assert.ok(match !== null && allowed.test(match), `unexpected expression ${match}`);
    }
    assert.deepEqual(queryTerms('Zebra zebra "OR" near( NEAR AND'), ['zebra', 'near']);
    assert.equal(buildMatchExpression(' "* ( ) : ^ -', scope), null);
    assert.equal(
      queryTerms('w '.repeat(100) + Array.from({ length: 100 }, (_, i) => `t${i}`).join(' ')).length,
      32,
    );
  });

  it('derives scope tokens per tenant, so equal user ids in two tenants never share a token', () => {
    const a = scopeTokens({ tenantId: 'tenant-a', userId: 'user-1' });
    const b = scopeTokens({ tenantId: 'tenant-b', userId: 'user-1' });
    assert.equal(a.length, 2);
    for (const token of a) assert.ok(!b.includes(token));
    assert.deepEqual(scopeTokens({ tenantId: 'tenant-a', userId: 'user-1' }), a);
    const full = scopeTokens({
      tenantId: 't',
      userId: 'x',
      agentId: 'x',
      conversationId: 'x',
      sessionId: 'x',
    });
    assert.equal(new Set(full).size, 5, 'the level is part of the token');
    // The narrower token already implies the tenant; a tenant-wide query needs the tenant token.
    assert.deepEqual(scopeMatchTokens({ tenantId: 'tenant-a', userId: 'user-1' }), a.slice(1));
    assert.deepEqual(scopeMatchTokens({ tenantId: 'tenant-a' }), a.slice(0, 1));
  });

  it('drops stopwords unless nothing else is left', () => {
    assert.deepEqual(queryTerms('What did Alice say about the dog?'), ['alice', 'say', 'dog']);
    assert.deepEqual(queryTerms('who are you'), ['who', 'are', 'you']);
  });
});
