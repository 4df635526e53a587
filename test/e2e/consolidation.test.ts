import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Topics } from '../../services/core/model/topics.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { ingestEvents, openRuntime } from '../support/embedded.js';
import { tempDir } from '../support/cli.js';

const day = (n: number, hour = 9) => new Date(Date.UTC(2026, 0, n, hour)).toISOString();

function turn(tenantId: string, session: number, turnId: string, text: string, seq: number) {
  return {
    tenantId,
    userId: 'u1',
    conversationId: `chat-${session}`,
    sessionId: `s${session}`,
    turnId,
    seq,
    role: 'user',
    speaker: 'Maya',
    text,
    occurredAt: day(session),
  };
}

describe('sleep-time consolidation, embedded (LLM-free policy)', () => {
  const dir = tempDir('consolidation');
  let runtime: EmbeddedRuntime;
  const duplicate = 'I adopted a greyhound named Pixel last spring and she loves the beach.';

  before(async () => {
    runtime = await openRuntime(dir.path, { consolidation: { enabled: false } }, new HashingEmbedder(64));
    const events = ['acme', 'other'].flatMap((tenant) => [
      turn(tenant, 1, 'm1', duplicate, 1),
      turn(tenant, 1, 'm2', 'My sister works as a nurse in Porto.', 2),
      turn(tenant, 3, 'm3', duplicate, 1),
      turn(tenant, 5, 'm4', 'We booked a cabin in the Alps for February.', 1),
    ]);
    await ingestEvents(runtime, events);
  });
  after(async () => {
    await runtime.close();
    dir.remove();
  });

  const acme = { tenantId: 'acme', userId: 'u1' };
  const search = async (tenantId: string, extra: { asOf?: number; includeSuperseded?: boolean } = {}) =>
    runtime.store.search({
      scope: { tenantId, userId: 'u1' },
      text: 'greyhound Pixel beach',
      limit: 10,
      ...extra,
    });

  it('merges the near-duplicates into one version citing both turns, and keeps the old versions', async () => {
    const before = await search('acme');
    assert.equal(before.length, 2, 'two copies before');
    const summary = await runtime.consolidate(acme, { dryRun: false });
    assert.equal(summary.counts.merge, 1);
    assert.equal(summary.counts.update + summary.counts.supersede, 0);
    assert.equal(summary.sources, 4);

    const hits = await search('acme');
    assert.equal(hits.length, 1, 'one current version');
    const merged = hits[0]?.memory;
    assert.ok(merged !== undefined);
    assert.deepEqual(
      [...merged.sourceTurnIds].sort(),
      [...new Set(before.flatMap((hit) => hit.memory.sourceTurnIds))].sort(),
    );
    assert.equal((await search('acme', { includeSuperseded: true })).length, 3);
    const history = await runtime.store.history(acme, before[0]?.memory.id ?? '');
    assert.equal(history?.versions.length, 3);
    assert.deepEqual(
      history?.ops.map((recorded) => [recorded.op.op, recorded.outcome]),
      [['update', 'applied']],
    );
    // As of the day between the two sessions, only the first copy was known.
    const asOf = await search('acme', { asOf: Date.parse(day(2)) });
    assert.deepEqual(
      asOf.map((hit) => hit.memory.id),
      [before.find((hit) => hit.memory.occurredAt === Date.parse(day(1)))?.memory.id],
    );
  });

  it('changes nothing of another tenant, and a second run decides nothing again', async () => {
    assert.equal((await search('other')).length, 2);
    assert.equal(
      (await runtime.store.pendingConsolidation({ tenantId: 'other', userId: 'u1' }, 10)).length,
      4,
    );
    const again = await runtime.consolidate(acme, { dryRun: false });
    assert.equal(again.sources, 0);
    assert.equal(again.decisions.length, 0);
    const ops = await runtime.eventLog.read(Topics.memoryOps, 0, 100);
    assert.equal(ops.length, 1);
    assert.equal(ops[0]?.value.tenantId, 'acme');
  });

  it('a dry run reports decisions and changes nothing', async () => {
    const other = { tenantId: 'other', userId: 'u1' };
    const dry = await runtime.consolidate(other, { dryRun: true });
    assert.equal(dry.counts.merge, 1);
    assert.equal((await search('other')).length, 2);
    assert.equal((await runtime.store.pendingConsolidation(other, 10)).length, 4);
    assert.equal((await runtime.eventLog.read(Topics.memoryOps, 0, 100)).length, 1);
  });
});
