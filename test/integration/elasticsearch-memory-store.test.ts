import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { z } from 'zod';
import { ElasticsearchMemoryStore } from '../../services/adapters/elasticsearch/elasticsearch-memory-store.js';
import {
  LATER_FIELDS,
  TEXT_ANALYZER,
  indexNames,
  indexSettings,
  memoryMappings,
  toDocument,
} from '../../services/adapters/elasticsearch/es-mapping.js';
import { opDocId } from '../../services/adapters/elasticsearch/es-ops.js';
import { contentHash } from '../../services/adapters/memory/content-hash.js';
import type { MemoryEntry, MemoryOp } from '../../services/core/model/generated.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import { LightmemError } from '../../services/core/errors.js';
import type { MemoryStore, OpWrite, SearchHit } from '../../services/core/ports/memory-store.js';
import type { Scope } from '../../services/core/model/scope.js';
import { memoryStoreOptionsContract } from '../contract/memory-store-options.contract.js';
import { expectCode, memoryStoreContract } from '../contract/memory-store.contract.js';
import { memoryVersionsContract } from '../contract/memory-versions.contract.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { DAY, T0, embeddedWrites, makeEntry, plainWrites, makeOp } from '../support/memory-fixtures.js';
import { deletePrefix, esUrl, freshPrefix, openFreshStore, rawClient } from './support/elasticsearch.js';

memoryStoreContract(
  'ElasticsearchMemoryStore (real Elasticsearch)',
  async () => (await openFreshStore()).store,
);
memoryVersionsContract(
  'ElasticsearchMemoryStore (real Elasticsearch)',
  async () => (await openFreshStore()).store,
);
memoryStoreOptionsContract(
  'ElasticsearchMemoryStore (real Elasticsearch)',
  async (options) => (await openFreshStore(options)).store,
);

const embedder = new HashingEmbedder(64);
const A1: Scope = { tenantId: 'tenant-a', userId: 'user-1' };
const client = rawClient();
after(() => client.close());

const hitsSchema = z.object({
  hits: z.object({
    hits: z.array(z.object({ _id: z.string(), _source: z.object({ tenantId: z.string() }) })),
  }),
});
const aliasSchema = z.record(
  z.string(),
  z.object({ aliases: z.record(z.string(), z.object({ is_write_index: z.boolean().optional() })) }),
);

describe('ElasticsearchMemoryStore', () => {
  it('reads a tenant through a filtered alias: even an empty query body sees only that tenant', async () => {
    const { store, prefix } = await openFreshStore();
    try {
      const mine = makeEntry({ text: 'Alpha notes' });
      const other = makeEntry({ tenantId: 'tenant-b', text: 'Alpha secret of tenant b' });
      await store.upsert(plainWrites([mine, other]));
      const aliases = aliasSchema.parse(await client.indices.getAlias({ name: `${prefix}memories-t-*` }));
      const tenantAliases = Object.values(aliases).flatMap((entry) => Object.keys(entry.aliases));
      assert.equal(tenantAliases.length, 2, 'one alias per tenant that wrote');
      const seen = new Map<string, string[]>();
      for (const alias of tenantAliases) {
        // No query at all (match_all), the way a buggy caller would send it.
        const response = hitsSchema.parse(await client.search({ index: alias, size: 100 }));
        seen.set(
          alias,
          response.hits.hits.map((hit) => hit._source.tenantId),
        );
      }
      assert.deepEqual([...seen.values()].map((tenants) => tenants.join(',')).sort(), [
        'tenant-a',
        'tenant-b',
      ]);
      // A tenant that never wrote has no alias: reads find nothing rather than failing.
      assert.deepEqual(await store.search({ scope: { tenantId: 'tenant-z' }, text: 'alpha', limit: 5 }), []);
      assert.equal(await store.get({ tenantId: 'tenant-z' }, mine.id), undefined);
      assert.deepEqual(await store.stats({ tenantId: 'tenant-z' }), {
        live: 0,
        superseded: 0,
        embedderId: null,
      });
    } finally {
      await store.close();
    }
  });

  it('keeps tenants apart in kNN through the alias filter', async () => {
    const { store, prefix } = await openFreshStore();
    try {
      const mine = makeEntry({ text: 'router password reset' });
      const crowd = Array.from({ length: 50 }, (_, i) =>
        makeEntry({ tenantId: 'tenant-b', text: `router password reset ${i}` }),
      );
      await store.upsert(await embeddedWrites(embedder, [mine, ...crowd]));
      const alias = `${prefix}memories-t-`;
      const aliases = aliasSchema.parse(await client.indices.getAlias({ name: `${alias}*` }));
      for (const name of Object.values(aliases).flatMap((entry) => Object.keys(entry.aliases))) {
        const response = hitsSchema.parse(
          await client.search({
            index: name,
            size: 100,
            knn: {
              field: 'embedding',
              query_vector: Array.from(embedder.embedOne('router password reset')),
              k: 100,
              num_candidates: 200,
            },
          }),
        );
        const tenants = new Set(response.hits.hits.map((hit) => hit._source.tenantId));
        assert.equal(tenants.size, 1, `alias ${name} returned ${[...tenants].join(', ')}`);
      }
    } finally {
      await store.close();
    }
  });

  it('throws a retryable UnavailableError when Elasticsearch is down', async () => {
    await assert.rejects(
      ElasticsearchMemoryStore.open({
        node: 'http://127.0.0.1:1',
        indexPrefix: freshPrefix(),
        requestTimeoutMs: 2_000,
      }),
      (error: unknown) => {
        assert.ok(error instanceof LightmemError, String(error));
        assert.equal(error.code, 'storage_unavailable');
        assert.equal(error.retryable, true);
        assert.equal(error.name, 'UnavailableError');
        return true;
      },
    );
  });

  it('versions the index: the alias writes to <prefix>memories-v1, made from the template', async () => {
    const { store, prefix } = await openFreshStore();
    try {
      const aliases = aliasSchema.parse(await client.indices.getAlias({ name: `${prefix}memories` }));
      assert.deepEqual(Object.keys(aliases), [`${prefix}memories-v1`]);
      assert.equal(aliases[`${prefix}memories-v1`]?.aliases[`${prefix}memories`]?.is_write_index, true);
      const templates = await client.indices.getIndexTemplate({ name: `${prefix}memories` });
      assert.deepEqual(templates.index_templates[0]?.index_template.index_patterns, [`${prefix}memories-v*`]);
      // Opening again (a second process) changes nothing.
      const again = await ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix });
      await again.close();
      assert.deepEqual(
        Object.keys(aliasSchema.parse(await client.indices.getAlias({ name: `${prefix}memories` }))),
        [`${prefix}memories-v1`],
      );
    } finally {
      await store.close();
    }
  });

  it('builds a new version from the template; after an alias switch, tenants read only the new version', async () => {
    const { store, prefix } = await openFreshStore();
    const [v1, v2, alias] = [`${prefix}memories-v1`, `${prefix}memories-v2`, `${prefix}memories`];
    try {
      const old = makeEntry({ text: 'indexed in version one' });
      await store.upsert(plainWrites([old]));
      // A replay builds v2 (the template gives it settings and mapping), then switches the alias.
      await client.indices.create({ index: v2 });
      const mapping = await client.indices.getMapping({ index: v2 });
      assert.equal(mapping[v2]?.mappings.dynamic, 'strict');
      assert.equal(mapping[v2]?.mappings.properties?.['searchText']?.type, 'text');
      await client.indices.updateAliases({
        actions: [{ add: { index: v2, alias, is_write_index: true } }, { remove: { index: v1, alias } }],
      });
      const after = await ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix });
      try {
        const fresh = makeEntry({ text: 'indexed in version two' });
        await after.upsert(plainWrites([fresh]));
        const tenantAliases = aliasSchema.parse(
          await client.indices.getAlias({ name: `${prefix}memories-t-*` }),
        );
        assert.deepEqual(Object.keys(tenantAliases), [v2], 'the tenant alias moved with the write index');
        const hits = await after.search({ scope: A1, text: 'indexed version', limit: 5 });
        assert.deepEqual(
          hits.map((h) => h.memory.id),
          [fresh.id],
        );
      } finally {
        await after.close();
      }
    } finally {
      await store.close();
    }
  });

  it('opens safely when several processes open the same prefix at once', async () => {
    const prefix = freshPrefix();
    const stores = await Promise.all(
      Array.from({ length: 4 }, () => ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix })),
    );
    try {
      const results = await Promise.all(
        stores.map(async (store, i) =>
          store.upsert(await embeddedWrites(embedder, [makeEntry({ text: `same ${i}` })])),
        ),
      );
      assert.equal(
        results.reduce((sum, r) => sum + r.inserted, 0),
        4,
      );
      assert.deepEqual(await stores[0]?.stats(), { live: 4, superseded: 0, embedderId: embedder.id });
    } finally {
      for (const store of stores) await store.close();
      await deletePrefix(client, prefix);
    }
  });

  it('records the embedder in the index and holds a second store on it to the same one', async () => {
    const { store, prefix } = await openFreshStore();
    const second = await ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix });
    try {
      await store.upsert(plainWrites([makeEntry({ text: 'no vector yet' })]));
      assert.equal((await second.stats()).embedderId, null);
      await store.upsert(await embeddedWrites(embedder, [makeEntry({ text: 'now with a vector' })]));
      assert.equal((await second.stats()).embedderId, embedder.id);
      await expectCode(
        second.upsert(await embeddedWrites(new HashingEmbedder(32), [makeEntry({ text: 'other model' })])),
        'model_mismatch',
      );
      const mapping = await client.indices.getMapping({ index: `${prefix}memories-v1` });
      assert.deepEqual(mapping[`${prefix}memories-v1`]?.mappings.properties?.['embedding'], {
        type: 'dense_vector',
        dims: 64,
        index: true,
        similarity: 'cosine',
        index_options: { type: 'hnsw', m: 16, ef_construction: 100 },
      });
    } finally {
      await second.close();
      await store.close();
    }
  });

  it('checks a whole batch before writing: a refused entry leaves no memory and no embedder behind', async () => {
    const { store } = await openFreshStore();
    try {
      const existing = makeEntry({ text: 'already here' });
      await store.upsert(plainWrites([existing]));
      const vectors = await embeddedWrites(embedder, [
        makeEntry({ text: 'first' }),
        makeEntry({ text: 'second' }),
      ]);
      const unclaimed = { entry: makeEntry({ text: 'third' }), embedding: embedder.embedOne('third') };
      await expectCode(store.upsert([...vectors, unclaimed]), 'invalid_input');
      await expectCode(
        store.upsert([...vectors, { entry: makeEntry({ tenantId: 'tenant b' }) }]),
        'invalid_input',
      );
      await expectCode(store.upsert([...vectors, { entry: { ...existing, userId: 'user-2' } }]), 'conflict');
      assert.deepEqual(await store.stats(), { live: 1, superseded: 0, embedderId: null });
      assert.deepEqual(await store.upsert(vectors), { inserted: 2, updated: 0, unchanged: 0 });
      assert.equal((await store.stats()).embedderId, embedder.id);
    } finally {
      await store.close();
    }
  });

  it('decides repeated ids of one batch in order, as sequential writes would', async () => {
    const { store } = await openFreshStore();
    try {
      const entry = makeEntry({ text: 'first version' });
      const changed = { ...entry, text: 'second version' };
      assert.deepEqual(await store.upsert(plainWrites([entry, entry, changed])), {
        inserted: 1,
        updated: 1,
        unchanged: 1,
      });
      assert.equal((await store.get(A1, entry.id))?.text, 'second version');
    } finally {
      await store.close();
    }
  });

  it('searches by the source text, returns the prompt text, and stores a zero vector without kNN', async () => {
    const { store } = await openFreshStore();
    try {
      const compressed = makeEntry({
        text: 'Ana booked flight Lisbon.',
        sourceText: 'Ana booked the early flight to Lisbon for the sales kickoff.',
      });
      const zero = makeEntry({ text: 'zero vector memory' });
      await store.upsert([
        ...(await embeddedWrites(embedder, [compressed])),
        {
          entry: { ...zero, pipeline: { ...zero.pipeline, embedder: embedder.id } },
          embedding: new Float32Array(64),
        },
      ]);
      const hits = await store.search({ scope: A1, text: 'sales kickoff', limit: 5 });
      assert.deepEqual(
        hits.map((h) => h.memory.id),
        [compressed.id],
      );
      assert.equal(hits[0]?.memory.text, 'Ana booked flight Lisbon.');
      const byZero = await store.search({
        scope: A1,
        text: 'zero vector',
        vector: new Float32Array(64),
        embedderId: embedder.id,
        limit: 5,
      });
      assert.deepEqual(
        byZero.map((h) => [h.memory.id, h.semantic]),
        [[zero.id, null]],
      );
    } finally {
      await store.close();
    }
  });

  it('refuses a bad configuration and calls after close', async () => {
    await expectCode(
      ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: 'Bad Prefix' }),
      'config_invalid',
    );
    await expectCode(
      ElasticsearchMemoryStore.open({ node: 'not a url', indexPrefix: freshPrefix() }),
      'config_invalid',
    );
    const { store } = await openFreshStore();
    await store.close();
    await expectCode(store.stats(), 'storage_unavailable');
  });

  it('fuses exactly as the SQLite store: the same kNN candidates, cosine parts and lexical matches', async () => {
    const words = 'alpha bravo delta echo golf hotel india kilo lima oscar papa tango'.split(' ');
    // Deterministic texts of 3–6 words from a vocabulary no stemmer changes.
    const entries = Array.from({ length: 150 }, (_, i) =>
      makeEntry({
        text: Array.from(
          { length: 3 + (i % 4) },
          (_, j) => words[(i * 7 + j * 5 + ((i * j) % 3)) % words.length],
        ).join(' '),
        occurredAt: T0 + i,
      }),
    );
    const writes = await embeddedWrites(embedder, entries);
    const { store } = await openFreshStore();
    const sqlite = SqliteMemoryStore.open(':memory:');
    try {
      await store.upsert(writes);
      await sqlite.upsert(writes);
      const run = async (s: MemoryStore, text: string, vectorText: string | null, limit: number) =>
        s.search({
          scope: A1,
          text,
          limit,
          ...(vectorText === null ? {} : { vector: embedder.embedOne(vectorText), embedderId: embedder.id }),
        });
      const byId = (hits: SearchHit[]) => new Map(hits.map((h) => [h.memory.id, h]));
      for (const query of ['alpha bravo', 'tango lima oscar', 'kilo', 'india papa golf echo']) {
        // Vector only: the same hits in the same order with the same scores.
        const [es, lite] = [await run(store, '', query, 20), await run(sqlite, '', query, 20)];
        assert.deepEqual(
          es.map((h) => h.memory.id),
          lite.map((h) => h.memory.id),
          query,
        );
        es.forEach((hit, i) => assert.ok(Math.abs(hit.score - (lite[i]?.score ?? -1)) < 1e-5, query));
        // Hybrid, every candidate returned: equal cosine parts, and the same memories matched by words.
        const [esAll, liteAll] = [
          byId(await run(store, query, query, 1000)),
          byId(await run(sqlite, query, query, 1000)),
        ];
        assert.deepEqual([...esAll.keys()].sort(), [...liteAll.keys()].sort(), query);
        for (const [id, hit] of esAll) {
          const other = liteAll.get(id);
          assert.ok(other !== undefined);
          assert.equal(hit.lexical === null, other.lexical === null, `${query}: lexical match of ${id}`);
          assert.ok(
            hit.semantic !== null &&
              other.semantic !== null &&
              Math.abs(hit.semantic - other.semantic) < 1e-5,
            `${query}: semantic part of ${id}: ${hit.semantic} vs ${other.semantic}`,
          );
        }
      }
    } finally {
      await sqlite.close();
      await store.close();
    }
  });

  it('keeps every kNN candidate when more memories match the words than the request returns', async () => {
    const words = 'bravo delta echo golf hotel india kilo lima'.split(' ');
    // All 190 match "alpha" (more than the 50 + 100 hits a limit-5 search asks for), at varied BM25.
    const entries = Array.from({ length: 190 }, (_, i) =>
      makeEntry({
        text: `${'alpha '.repeat(1 + (i % 5))}${words[i % 8]} ${words[(i * 3) % 8]} ${words[(i * 5 + 1) % 8]}`,
        occurredAt: T0 + i,
      }),
    );
    const writes = await embeddedWrites(embedder, entries);
    // Only the semantic part counts: any kNN candidate lost to word matches would change the cosine scaling.
    const fusion = { lexicalWeight: 0, semanticWeight: 1 };
    const { store } = await openFreshStore({ fusion });
    const sqlite = SqliteMemoryStore.open(':memory:', { fusion });
    try {
      await store.upsert(writes);
      await sqlite.upsert(writes);
      for (const [text, vectorText] of [
        ['alpha', 'bravo delta echo'],
        ['alpha golf', 'lima kilo'],
        ['alpha hotel india', 'india'],
      ] as const) {
        const request = {
          scope: A1,
          text,
          vector: embedder.embedOne(vectorText),
          embedderId: embedder.id,
          limit: 5,
        };
        const [es, lite] = [await store.search(request), await sqlite.search(request)];
        assert.deepEqual(
          es.map((h) => [h.memory.id, h.semantic?.toFixed(5)]),
          lite.map((h) => [h.memory.id, h.semantic?.toFixed(5)]),
          text,
        );
      }
    } finally {
      await sqlite.close();
      await store.close();
    }
  });

  it('counts each memory once when several stores write the same batch at once', async () => {
    const { store, prefix } = await openFreshStore();
    const others = await Promise.all(
      [1, 2, 3].map(() => ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix })),
    );
    try {
      const writes = await embeddedWrites(
        embedder,
        Array.from({ length: 300 }, (_, i) => makeEntry({ text: `race entry ${i}` })),
      );
      const results = await Promise.all([store, ...others].map((s) => s.upsert(writes)));
      assert.equal(
        results.reduce((sum, r) => sum + r.inserted, 0),
        300,
        JSON.stringify(results),
      );
      for (const r of results) assert.equal(r.inserted + r.unchanged, 300, JSON.stringify(r));
      assert.equal((await store.stats()).live, 300);
    } finally {
      for (const other of others) await other.close();
      await store.close();
    }
  });

  it('fails retryably while Elasticsearch is unreachable and recovers when it is back', async () => {
    const proxy = await tcpProxy(new URL(esUrl));
    const prefix = freshPrefix();
    const store = await ElasticsearchMemoryStore.open({ node: proxy.url, indexPrefix: prefix });
    try {
      const entry = makeEntry({ text: 'outage survivor' });
      await store.upsert(plainWrites([entry]));
      await proxy.stop();
      const calls = [
        () => store.search({ scope: A1, text: 'outage', limit: 5 }),
        () => store.upsert(plainWrites([makeEntry({ text: 'written during the outage' })])),
        () => store.get(A1, entry.id),
      ];
      for (const call of calls) {
        await assert.rejects(call(), (error: unknown) => {
          assert.ok(error instanceof LightmemError && error.retryable, String(error));
          assert.equal(error.code, 'storage_unavailable');
          return true;
        });
      }
      await proxy.start();
      const hits = await store.search({ scope: A1, text: 'outage', limit: 5 });
      assert.deepEqual(
        hits.map((h) => h.memory.id),
        [entry.id],
      );
    } finally {
      await store.close();
      await proxy.stop();
      await deletePrefix(client, prefix);
    }
  });
});

describe('ElasticsearchMemoryStore versions', () => {
  const stamp = (entry: MemoryEntry): MemoryEntry => ({
    ...entry,
    pipeline: { ...entry.pipeline, embedder: embedder.id },
  });
  const opWrite = (op: MemoryOp): OpWrite => ({
    op,
    embeddings: op.replacements.map((entry) => embedder.embedOne(entry.text)),
  });
  const op = makeOp;
  /** An update of `targets` into one new version. */
  function merge(
    opId: string,
    targets: readonly MemoryEntry[],
    text: string,
  ): { op: MemoryOp; merged: MemoryEntry } {
    const merged = stamp(makeEntry({ id: `mem_${opId}`, text, validFrom: T0 + DAY }));
    return {
      merged,
      op: op({
        opId,
        op: 'update',
        targetIds: targets.map((t) => t.id),
        replacementIds: [merged.id],
        validTo: T0 + DAY,
        replacements: [merged],
      }),
    };
  }

  it('maps the new fields on an index made by the previous template; its memories start pending', async () => {
    const prefix = freshPrefix();
    const names = indexNames(prefix);
    const later = new Set(Object.keys(LATER_FIELDS));
    const withoutLater = <T>(record: Record<string, T>): Record<string, T> =>
      Object.fromEntries(Object.entries(record).filter(([field]) => !later.has(field)));
    const oldProperties = withoutLater(memoryMappings(TEXT_ANALYZER).properties ?? {});
    await client.indices.putIndexTemplate({
      name: names.template,
      index_patterns: [names.pattern],
      priority: 200,
      version: 1,
      template: {
        settings: indexSettings(['lowercase']),
        mappings: { dynamic: 'strict', properties: oldProperties },
      },
    });
    await client.indices.create({
      index: names.index(1),
      aliases: { [names.alias]: { is_write_index: true } },
    });
    await client.indices.updateAliases({
      actions: [
        {
          add: {
            index: names.index(1),
            alias: names.tenantAlias('tenant-a'),
            filter: { term: { tenantId: 'tenant-a' } },
          },
        },
      ],
    });
    // A memory as the previous version wrote it: no consolidatedAt, no closedBy.
    const old = makeEntry({ text: 'written by the previous version' });
    const oldDoc = withoutLater<unknown>({
      ...toDocument(old, {
        validTo: null,
        supersededBy: null,
        ingestedAt: old.ingestedAt,
        contentHash: contentHash(old, undefined),
        embedding: undefined,
      }),
    });
    assert.ok(!('consolidatedAt' in oldDoc));
    await client.index({ index: names.alias, id: old.id, document: oldDoc, refresh: true });

    const store = await ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix });
    try {
      const mapping = await client.indices.getMapping({ index: names.index(1) });
      const properties = mapping[names.index(1)]?.mappings.properties ?? {};
      assert.equal(properties['consolidatedAt']?.type, 'long');
      assert.equal(properties['closedBy']?.type, 'keyword');
      const templates = await client.indices.getIndexTemplate({ name: names.template });
      assert.equal(templates.index_templates[0]?.index_template.version, 2, 'the template is upgraded');
      assert.deepEqual(
        (await store.pendingConsolidation(A1, 10)).map((e) => e.id),
        [old.id],
      );
      assert.deepEqual(await store.get(A1, old.id), old);
      assert.equal(await store.markConsolidated(A1, [old.id], T0), 1);
      assert.deepEqual(await store.pendingConsolidation(A1, 10), []);
      assert.deepEqual(await store.upsert(plainWrites([old])), { inserted: 0, updated: 0, unchanged: 1 });
      const decision = op({
        opId: 'op_on_old',
        op: 'supersede',
        targetIds: [old.id],
        replacementIds: ['mem_newer'],
      });
      assert.deepEqual(await store.applyOps([opWrite(decision)]), { applied: 1, stale: 0, duplicate: 0 });
      assert.equal((await store.get(A1, old.id))?.supersededBy, 'mem_newer');
    } finally {
      await store.close();
      await deletePrefix(client, prefix);
    }
  });

  it('records ops per tenant: the same opId in two tenants are two ops', async () => {
    const { store, prefix } = await openFreshStore();
    try {
      const a = stamp(makeEntry({ text: 'Gina likes jazz' }));
      const b = stamp(makeEntry({ tenantId: 'tenant-b', text: 'Gina likes jazz' }));
      await store.upsert(await embeddedWrites(embedder, [a, b]));
      const ignoreA = op({ opId: 'op_same', op: 'ignore', targetIds: [a.id] });
      const ignoreB = op({ opId: 'op_same', op: 'ignore', targetIds: [b.id], tenantId: 'tenant-b' });
      assert.deepEqual(await store.applyOps([ignoreA, ignoreB].map(opWrite)), {
        applied: 2,
        stale: 0,
        duplicate: 0,
      });
      const records = hitsOf(await client.search({ index: `${prefix}memory-ops`, size: 10 }));
      assert.deepEqual(
        records.map((hit) => hit._id).sort(),
        [opDocId('tenant-a', 'op_same'), opDocId('tenant-b', 'op_same')].sort(),
      );
      // Each tenant reads its own records only (history goes through the tenant's ops alias).
      const history = await store.history({ tenantId: 'tenant-b' }, b.id);
      assert.deepEqual(
        history?.ops.map((r) => [r.op.tenantId, r.op.opId, r.outcome]),
        [['tenant-b', 'op_same', 'applied']],
      );
    } finally {
      await store.close();
    }
  });

  it('completes an op interrupted after its writes and before its record, without calling it stale', async () => {
    const { store, prefix } = await openFreshStore();
    try {
      const a = stamp(makeEntry({ text: 'Hugo drives a blue car' }));
      const b = stamp(makeEntry({ text: 'Hugo drives a blue car daily', occurredAt: T0 + 1 }));
      await store.upsert(await embeddedWrites(embedder, [a, b]));
      const { op: update, merged } = merge('op_interrupted', [a, b], 'Hugo drives a blue car every day');
      assert.deepEqual(await store.applyOps([opWrite(update)]), { applied: 1, stale: 0, duplicate: 0 });
      // The process died before recording: the memory writes are there, the record is not.
      await client.delete({
        index: `${prefix}memory-ops`,
        id: opDocId('tenant-a', update.opId),
        refresh: true,
      });
      assert.deepEqual(await store.recordedOps('tenant-a', [update.opId]), new Set());
      assert.deepEqual(await store.applyOps([opWrite(update)]), { applied: 1, stale: 0, duplicate: 0 });
      for (const id of [a.id, b.id]) assert.equal((await store.get(A1, id))?.supersededBy, merged.id);
      assert.deepEqual(await store.get(A1, merged.id), merged);
      assert.deepEqual(await store.applyOps([opWrite(update)]), { applied: 0, stale: 0, duplicate: 1 });
    } finally {
      await store.close();
    }
  });

  it('applies an op raced by several stores once, and leaves no half-applied op behind a conflict', async () => {
    const { store, prefix } = await openFreshStore();
    const others = await Promise.all(
      [1, 2, 3].map(() => ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix })),
    );
    const stores = [store, ...others];
    try {
      for (let round = 0; round < 4; round++) {
        const [x, y, z] = ['x', 'y', 'z'].map((name) =>
          stamp(makeEntry({ text: `Ivy fact ${name} ${round}` })),
        );
        if (x === undefined || y === undefined || z === undefined) throw new Error('unreachable');
        const newer = stamp(makeEntry({ text: `Ivy newer fact ${round}`, occurredAt: T0 + DAY }));
        await store.upsert(await embeddedWrites(embedder, [x, y, z, newer]));
        // The same op from every store: applied once.
        const same = merge(`op_same_${round}`, [x], `Ivy merged fact x ${round}`);
        const outcomes = await Promise.all(stores.map((s) => s.applyOps([opWrite(same.op)])));
        assert.equal(
          outcomes.reduce((n, r) => n + r.applied, 0),
          1,
          JSON.stringify(outcomes),
        );
        assert.equal(
          outcomes.reduce((n, r) => n + r.duplicate, 0),
          stores.length - 1,
        );
        // Two ops sharing a target y: one applies, the other is stale and changed nothing.
        const first = merge(`op_first_${round}`, [y, newer], `Ivy merged y ${round}`);
        const second = op({
          opId: `op_second_${round}`,
          op: 'supersede',
          targetIds: [z, y].map((t) => t.id),
          replacementIds: [x.id],
        });
        const [r1, r2] = await Promise.all([
          stores[round % 4]?.applyOps([opWrite(first.op)]),
          stores[(round + 1) % 4]?.applyOps([opWrite(second)]),
        ]);
        assert.equal((r1?.applied ?? 0) + (r2?.applied ?? 0), 1, JSON.stringify([r1, r2]));
        assert.equal((r1?.stale ?? 0) + (r2?.stale ?? 0), 1);
        const closedBy = async (id: string) => (await store.get(A1, id))?.supersededBy ?? null;
        if (r1?.applied === 1) {
          assert.equal(await closedBy(y.id), first.merged.id);
          assert.equal(await closedBy(newer.id), first.merged.id);
          assert.equal(await closedBy(z.id), null, 'the stale op closed nothing');
        } else {
          assert.equal(await closedBy(y.id), x.id);
          assert.equal(await closedBy(z.id), x.id);
          assert.equal(await closedBy(newer.id), null, 'the stale op closed nothing');
          assert.equal(await store.get(A1, first.merged.id), undefined, 'nor wrote its replacement');
        }
      }
    } finally {
      for (const other of others) await other.close();
      await store.close();
    }
  });

  it('applies ops of one batch in order: a later op may target what an earlier one wrote', async () => {
    const { store } = await openFreshStore();
    try {
      const a = stamp(makeEntry({ text: 'Jon owns a bike' }));
      await store.upsert(await embeddedWrites(embedder, [a]));
      const one = merge('op_one', [a], 'Jon owns a red bike');
      const two = merge('op_two', [one.merged], 'Jon owns a red racing bike');
      const again = op({ opId: 'op_late', op: 'supersede', targetIds: [a.id], replacementIds: ['mem_x'] });
      assert.deepEqual(await store.applyOps([one.op, two.op, again, one.op].map(opWrite)), {
        applied: 2,
        stale: 1,
        duplicate: 1,
      });
      const history = await store.history(A1, two.merged.id);
      assert.deepEqual(
        history?.versions.map((v) => v.id),
        [a.id, one.merged.id, two.merged.id].sort((p, q) =>
          p === a.id ? -1 : q === a.id ? 1 : p < q ? -1 : 1,
        ),
      );
      assert.deepEqual(history?.ops.map((r) => [r.op.opId, r.outcome]).sort(), [
        ['op_late', 'stale'],
        ['op_one', 'applied'],
        ['op_two', 'applied'],
      ]);
      await expectCode(
        store.applyOps([opWrite(op({ opId: 'op_erase', op: 'erase', targetIds: [a.id] }))]),
        'invalid_input',
      );
    } finally {
      await store.close();
    }
  });

  it('erases the op records naming an erased memory', async () => {
    const { store, prefix } = await openFreshStore();
    try {
      const mine = stamp(makeEntry({ text: 'Kim lives in Oslo' }));
      const other = stamp(makeEntry({ userId: 'user-2', text: 'Lee lives in Rome' }));
      await store.upsert(await embeddedWrites(embedder, [mine, other]));
      const { op: update } = merge('op_kim', [mine], 'Kim lives in Oslo, Norway');
      const keep = op({ opId: 'op_lee', op: 'ignore', userId: 'user-2', targetIds: [other.id] });
      await store.applyOps([update, keep].map(opWrite));
      await store.erase(A1);
      assert.deepEqual(await store.recordedOps('tenant-a', ['op_kim', 'op_lee']), new Set(['op_lee']));
      const records = hitsOf(await client.search({ index: `${prefix}memory-ops`, size: 10 }));
      assert.equal(records.length, 1);
    } finally {
      await store.close();
    }
  });

  it('pages the pending users of every tenant past one aggregation page', async () => {
    const { store } = await openFreshStore();
    try {
      const entries = Array.from({ length: 1_050 }, (_, i) =>
        makeEntry({ userId: `user-${String(i).padStart(4, '0')}`, text: `note ${i}` }),
      );
      await store.upsert(plainWrites(entries));
      const users = await store.pendingUsers();
      assert.equal(users.length, 1_050);
      assert.deepEqual(users[1_049], { tenantId: 'tenant-a', userId: 'user-1049', pending: 1 });
      assert.ok(users.every((u, i) => i === 0 || (users[i - 1]?.userId ?? '') < u.userId));
    } finally {
      await store.close();
    }
  });
});

const opsHitsSchema = z.object({ hits: z.object({ hits: z.array(z.object({ _id: z.string() })) }) });
function hitsOf(response: unknown): { _id: string }[] {
  return opsHitsSchema.parse(response).hits.hits;
}

/** A TCP proxy to `target` that can be stopped (connections cut, port closed) and started again. */
async function tcpProxy(
  target: URL,
): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;
  const start = async () => {
    const s = createServer((inbound) => {
      const outbound = createConnection({ host: target.hostname, port: Number(target.port) });
      for (const socket of [inbound, outbound]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      inbound.pipe(outbound).pipe(inbound);
    });
    await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
    const address = s.address();
    if (address !== null && typeof address === 'object') port = address.port;
    server = s;
  };
  const stop = async () => {
    const s = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    if (s !== null) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await start();
  return { url: `http://127.0.0.1:${port}`, stop, start };
}
