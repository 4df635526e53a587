import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ingestRawTurns } from '../../services/bench/raw-turn-ingest.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import type { InputItem, TurnInput } from '../../services/ingest/index.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { makeTurn } from '../support/event-fixtures.js';

/** Turns of two users, as a dataset reader yields them. */
function items(count: number): InputItem[] {
  return Array.from({ length: count }, (_, i) => {
    const event: TurnInput = makeTurn(i, {
      userId: i % 2 === 0 ? 'user-1' : 'user-2',
      text: `turn ${i} about parcel ${i * 7}`,
    });
    return { line: i + 1, label: `line ${i + 1}`, raw: '', result: { ok: true, event } };
  });
}

describe('raw-turn baselines', () => {
  it('embeds each turn once: a data dir asked again reuses the stored vectors', async () => {
    const store = SqliteMemoryStore.open(':memory:');
    try {
      const embedder = new HashingEmbedder(32);
      const deps = { store, embedder, clock: { now: () => 0 }, roles: new Set(['user']) };
      const first = await ingestRawTurns(items(10), deps, 4);
      assert.equal(first.turns, 10);
      assert.equal(
        embedder.calls.reduce((sum, n) => sum + n, 0),
        10,
      );

      embedder.calls.length = 0;
      const again = await ingestRawTurns(items(12), deps, 4);
      assert.equal(again.turns, 12);
      assert.deepEqual(embedder.calls, [2], 'only the two new turns are embedded');
      assert.equal((await store.stats()).live, 12);

      const scope = { tenantId: 'tenant-a', userId: 'user-2' };
      const hits = await store.search({
        scope,
        text: 'parcel 77',
        vector: embedder.embedOne('Ana: turn 11 about parcel 77'),
        embedderId: embedder.id,
        limit: 1,
      });
      assert.equal(hits[0]?.memory.text, 'turn 11 about parcel 77');
    } finally {
      await store.close();
    }
  });
});
