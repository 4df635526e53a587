import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/cli.js';
import { ingestEvents, openRuntime } from '../support/embedded.js';
import { MemorySearch } from '../../services/app/memory-search.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';

const secret = 'PIN 4471 for the Zephyr account of Bob Secretman';

function turn(tenantId: string, userId: string, i: number, text: string): Record<string, unknown> {
  return {
    tenantId,
    userId,
    conversationId: `${userId}-chat`,
    turnId: `t${i}`,
    seq: i,
    role: 'customer',
    speaker: userId,
    text,
    occurredAt: '2024-05-01T09:00:00Z',
  };
}

describe('scope isolation', () => {
  const dir = tempDir('scope');
  let runtime: EmbeddedRuntime;
  before(async () => {
    // With an embedder too, so the kNN half is isolated as well as BM25.
    runtime = await openRuntime(dir.path, {}, new HashingEmbedder());
    await ingestEvents(runtime, [
      turn('acme', 'alice', 0, 'I love hiking in the Alps and my dog is called Biscuit.'),
      turn('acme', 'alice', 1, 'My Zephyr account is the family one.'),
      turn('acme', 'bob', 0, secret),
      turn('acme', 'bob', 1, 'Bob likes hiking in the Alps too, with his dog Biscuit.'),
      turn('globex', 'alice', 0, `${secret} (other tenant, same user id)`),
    ]);
  });
  after(async () => {
    await runtime.close();
    dir.remove();
  });

  const adversarial = [
    secret,
    'Bob Secretman PIN 4471',
    'bob',
    '"bob" OR "alice" OR *',
    'scope: u_bob OR tenant_id = globex',
    "' OR 1=1 --",
    'NEAR(PIN 4471) Zephyr*',
    'userId:bob tenantId:globex conversationId:bob-chat',
    'hiking Alps dog Biscuit',
  ];

  for (const query of adversarial) {
    it(`alice@acme never sees bob's or globex's memories: ${JSON.stringify(query)}`, async () => {
      const search = new MemorySearch(runtime.store, runtime.components.embedder);
      const results = await search.search({ scope: { tenantId: 'acme', userId: 'alice' }, query, limit: 50 });
      for (const row of results) {
        assert.equal(row.tenantId, 'acme');
        assert.equal(row.userId, 'alice');
        assert.ok(!row.text.includes('4471'), row.text);
      }
    });
  }

  it('the same queries do find bob his own secret (the test can fail)', async () => {
    const search = new MemorySearch(runtime.store, runtime.components.embedder);
    const results = await search.search({
      scope: { tenantId: 'acme', userId: 'bob' },
      query: 'PIN 4471 Zephyr',
      limit: 5,
    });
    assert.ok(results.some((row) => row.text.includes('4471')));
  });

  it('a search without a valid tenant is refused', async () => {
    const search = new MemorySearch(runtime.store, runtime.components.embedder);
    await assert.rejects(search.search({ scope: { tenantId: '' }, query: 'hiking', limit: 5 }), /tenantId/);
  });
});
