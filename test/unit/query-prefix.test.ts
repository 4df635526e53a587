import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemorySearch } from '../../services/app/memory-search.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import { CachingEmbedder } from '../../services/runtime/caching-embedder.js';
import { findModelSpec, modelRegistry } from '../../services/models/model-registry.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { embeddedWrites, makeEntry } from '../support/memory-fixtures.js';

/** A hashing embedder with a query instruction that records every text it embeds. */
class InstructedEmbedder extends HashingEmbedder {
  readonly texts: string[] = [];
  constructor(readonly queryPrefix: string | undefined) {
    super(64);
  }
  override async embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.texts.push(...texts);
    return super.embed(texts);
  }
}

describe('query instruction of the embedding model', () => {
  const store = SqliteMemoryStore.open(':memory:');
  after(() => store.close());
  const scope = { tenantId: 'tenant-a', userId: 'user-1' };

  it('puts the model’s prefix before the query, not before the memories', async () => {
    const embedder = new InstructedEmbedder('Represent this: ');
    const entries = [
      makeEntry({ text: 'My parcel number is ZX-41.' }),
      makeEntry({ text: 'The customer prefers email.' }),
    ];
    await store.upsert(await embeddedWrites(embedder, entries));
    embedder.texts.length = 0;

    const hits = await new MemorySearch(store, embedder).search({ scope, query: 'parcel number', limit: 5 });
    assert.deepEqual(embedder.texts, ['Represent this: parcel number']);
    assert.equal(hits[0]?.text, 'My parcel number is ZX-41.');

    // Through the runtime's cache the same instruction applies (and is part of the cached text).
    const cached = new CachingEmbedder(embedder, 16);
    assert.equal(cached.queryPrefix, 'Represent this: ');
    embedder.texts.length = 0;
    await new MemorySearch(store, cached).search({ scope, query: 'email', limit: 5 });
    assert.deepEqual(embedder.texts, ['Represent this: email']);
  });

  it('embeds the query as it is when the model has no instruction', async () => {
    const embedder = new InstructedEmbedder(undefined);
    await new MemorySearch(store, embedder).search({ scope, query: 'parcel number', limit: 5 });
    assert.deepEqual(embedder.texts, ['parcel number']);
  });

  it('gives the bge models their documented instruction and MiniLM none', () => {
    assert.equal(
      findModelSpec('bge-small-en-v1.5-q')?.queryPrefix,
      'Represent this sentence for searching relevant passages: ',
    );
    for (const spec of modelRegistry) {
      assert.equal(spec.queryPrefix !== undefined, spec.name.startsWith('bge-'), spec.name);
    }
  });
});
