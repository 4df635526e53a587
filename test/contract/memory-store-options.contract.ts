import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FusionWeights } from '../../services/adapters/memory/memory-fusion.js';
import type { Scope } from '../../services/core/model/scope.js';
import type { Clock } from '../../services/core/ports/clock.js';
import type { MemoryStore } from '../../services/core/ports/memory-store.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { DAY, T0, embeddedWrites, makeEntry, plainWrites } from '../support/memory-fixtures.js';
import { expectCode } from './memory-store.contract.js';

/** What every store adapter offers beyond the port: options, and tenant off-boarding. */
export interface AdminMemoryStore extends MemoryStore {
  eraseTenant(tenantId: string): Promise<string[]>;
}

export interface StoreOptions {
  readonly fusion?: FusionWeights;
  readonly clock?: Clock;
}

/**
 * Store options and eraseTenant, the same for every adapter. `open` must return an empty store each time;
 * the cases close what they open.
 */
export function memoryStoreOptionsContract(
  name: string,
  open: (options: StoreOptions) => Promise<AdminMemoryStore>,
): void {
  const embedder = new HashingEmbedder(64);
  const A1: Scope = { tenantId: 'tenant-a', userId: 'user-1' };

  describe(`MemoryStore options: ${name}`, () => {
    it('eraseTenant deletes one whole tenant and nothing else', async () => {
      const store = await open({});
      try {
        const a = [
          makeEntry({ text: 'a1' }),
          makeEntry({ userId: 'user-9', conversationId: 'c9', text: 'a2' }),
        ];
        const b = makeEntry({ tenantId: 'tenant-b', text: 'b1' });
        await store.upsert(await embeddedWrites(embedder, [...a, b]));
        assert.deepEqual((await store.eraseTenant('tenant-a')).sort(), a.map((e) => e.id).sort());
        assert.deepEqual(await store.stats(), { live: 1, superseded: 0, embedderId: embedder.id });
        await expectCode(store.eraseTenant(''), 'invalid_input');
      } finally {
        await store.close();
      }
    });

    it('applies the configured fusion weights', async () => {
      const entries = [
        makeEntry({ text: 'solar panel warranty claim' }),
        makeEntry({ text: 'panel inspection' }),
      ];
      const run = async (lexicalWeight: number, semanticWeight: number) => {
        const store = await open({ fusion: { lexicalWeight, semanticWeight } });
        try {
          await store.upsert(await embeddedWrites(embedder, entries));
          return await store.search({
            scope: A1,
            text: 'warranty panel',
            vector: embedder.embedOne('warranty panel'),
            embedderId: embedder.id,
            limit: 5,
          });
        } finally {
          await store.close();
        }
      };
      for (const hit of await run(1, 0)) assert.equal(hit.score, hit.lexical ?? 0);
      for (const hit of await run(0, 3)) assert.equal(hit.score, hit.semantic ?? 0);
      for (const hit of await run(2, 2)) {
        assert.ok(Math.abs(hit.score - 0.5 * (hit.lexical ?? 0) - 0.5 * (hit.semantic ?? 0)) < 1e-12);
      }
      await expectCode(open({ fusion: { lexicalWeight: 0, semanticWeight: 0 } }), 'config_invalid');
    });

    it('judges validity against the injected clock', async () => {
      let now = T0;
      const store = await open({ clock: { now: () => now } });
      try {
        const entry = makeEntry({ text: 'trial subscription active', validTo: T0 + DAY });
        await store.upsert(plainWrites([entry]));
        const search = () => store.search({ scope: A1, text: 'subscription', limit: 5 });
        assert.equal((await search()).length, 1);
        assert.equal((await store.stats(A1)).live, 1);
        now = T0 + DAY; // validTo is exclusive: at validTo the memory is no longer live
        assert.equal((await search()).length, 0);
        assert.deepEqual(await store.stats(A1), { live: 0, superseded: 1, embedderId: null });
      } finally {
        await store.close();
      }
    });
  });
}
