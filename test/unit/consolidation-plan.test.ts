import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import type { Neighbour } from '../../services/core/ports/memory-store.js';
import { invertQueues, updateQueue } from '../../services/stages/consolidation/update-queues.js';
import { nearDuplicateGroups } from '../../services/stages/consolidation/near-duplicates.js';
import { decisionOp, decisionOpId, mergeOp } from '../../services/stages/consolidation/consolidation-ops.js';
import { DAY, HOUR, T0, makeEntry } from '../support/memory-fixtures.js';

const settings = { topK: 20, keepTopN: 10, threshold: 0.8 };
const at = (hours: number, text: string, extra: Partial<MemoryEntry> = {}): MemoryEntry =>
  makeEntry({
    text,
    occurredAt: T0 + hours * HOUR,
    validFrom: T0 + hours * HOUR,
    sourceTurnIds: [`turn-${text}`],
    ...extra,
  });
const near = (memory: MemoryEntry, similarity: number): Neighbour => ({ memory, similarity });
const ids = (entries: readonly { id: string }[]) => entries.map((e) => e.id);

describe('update queues', () => {
  const source = at(10, 'source');
  const older = at(5, 'older');
  const oldest = at(1, 'oldest');

  it('keeps earlier memories of the same user above the threshold, best first, itself excluded', () => {
    const queue = updateQueue(
      source,
      [
        near(source, 1),
        near(oldest, 0.85),
        near(older, 0.95),
        near(at(2, 'dissimilar'), 0.79),
        near(at(20, 'later'), 0.99),
        near(at(3, 'other user', { userId: 'user-2' }), 0.99),
        near(at(3, 'other tenant', { tenantId: 'tenant-b' }), 0.99),
      ],
      settings,
    );
    assert.deepEqual(ids(queue.map((n) => n.memory)), [older.id, oldest.id]);
  });

  it('orders equal times by id, so two facts of one message never both qualify', () => {
    const a = at(10, 'same message a', { id: 'mem_a' });
    const b = at(10, 'same message b', { id: 'mem_b' });
    assert.deepEqual(ids(updateQueue(b, [near(a, 0.9)], settings).map((n) => n.memory)), ['mem_a']);
    assert.deepEqual(updateQueue(a, [near(b, 0.9)], settings), []);
  });

  it('keeps at most keepTopN and leaves out a version that already holds the source', () => {
    const many = Array.from({ length: 15 }, (_, i) => near(at(i / 2, `n${i}`), 0.81 + i / 100));
    assert.equal(updateQueue(source, many, settings).length, 10);
    assert.equal(updateQueue(source, many, settings)[0]?.similarity, 0.81 + 14 / 100);
    const merged = at(1, 'merged', { sourceTurnIds: ['turn-oldest', ...source.sourceTurnIds] });
    assert.deepEqual(updateQueue(source, [near(merged, 0.99)], settings), []);
  });

  it('inverts the queues into targets with their newer sources, oldest first', () => {
    const s1 = at(10, 's1');
    const s2 = at(12, 's2');
    const cases = invertQueues([
      { source: s2, queue: [near(older, 0.9), near(oldest, 0.82)] },
      { source: s1, queue: [near(older, 0.88)] },
    ]);
    assert.deepEqual(
      cases.map((c) => [c.target.id, ids(c.sources.map((s) => s.memory))]),
      [
        [oldest.id, [s2.id]],
        [older.id, [s1.id, s2.id]],
      ],
    );
    assert.equal(cases[1]?.sources[1]?.similarity, 0.9);
  });
});

describe('near-duplicate groups', () => {
  it('links near-duplicates of one speaker and kind into one group (union-find), oldest first', () => {
    const a = at(1, 'a');
    const b = at(2, 'b');
    const c = at(3, 'c');
    const otherSpeaker = at(4, 'd', { speaker: 'agent' });
    const looser = at(5, 'e');
    const groups = nearDuplicateGroups(
      [
        { target: a, sources: [near(b, 0.98), near(looser, 0.9)] },
        { target: b, sources: [near(c, 0.975), near(otherSpeaker, 0.99)] },
      ],
      { similarity: 0.97 },
    );
    assert.deepEqual(groups.map(ids), [[a.id, b.id, c.id]]);
  });
});

describe('consolidation ops', () => {
  const context = { policy: 'near-duplicate@0.97', requestedBy: 'consolidation', now: T0 + 30 * DAY };

  it('merges near-duplicates into one version citing every turn, valid from the newest member', () => {
    const a = at(1, 'Bob likes tea', { sourceTurnIds: ['t1'] });
    const b = at(5, 'Bob likes green tea', { sourceTurnIds: ['t7', 't8'] });
    const op = mergeOp([b, a], 0.97, context);
    assert.equal(op.op, 'update');
    assert.deepEqual(op.targetIds, [a.id, b.id]);
    const [version] = op.replacements;
    assert.ok(version !== undefined);
    assert.deepEqual(op.replacementIds, [version.id]);
    assert.equal(version.text, 'Bob likes green tea', 'the longest text');
    assert.deepEqual(version.sourceTurnIds, ['t1', 't7', 't8']);
    assert.equal(version.occurredAt, a.occurredAt);
    assert.equal(version.validFrom, b.occurredAt);
    assert.equal(op.validTo, b.occurredAt);
    assert.equal(mergeOp([a, b], 0.97, context).opId, op.opId, 'same members, same op');
    assert.equal(mergeOp([a, b], 0.97, { ...context, now: context.now + 1 }).opId, op.opId);
  });

  it('turns decisions into update, supersede and ignore ops on the target', () => {
    const target = at(1, 'Alice lives in New York', { sourceTurnIds: ['t1'], sourceText: 'I live in NY' });
    const s1 = at(20, 'Alice moved to Boston', { sourceTurnIds: ['t9'] });
    const s2 = at(30, 'Alice moved to Seattle', { sourceTurnIds: ['t12'] });
    const item = { target, sources: [near(s1, 0.85), near(s2, 0.83)] };
    const llm = { ...context, policy: 'llm:m@abc', promptHash: 'abc' };
    const update = decisionOp(
      item,
      { action: 'update', text: 'Alice lived in NY, then Boston', reason: 'r' },
      llm,
    );
    assert.equal(update.op, 'update');
    assert.deepEqual(update.targetIds, [target.id]);
    assert.deepEqual(update.sourceIds, [s1.id, s2.id]);
    assert.deepEqual(update.replacements[0]?.sourceTurnIds, ['t1', 't9', 't12']);
    assert.equal(update.replacements[0]?.validFrom, s2.occurredAt);
    assert.equal(update.validTo, s2.occurredAt);
    assert.equal(update.replacements[0]?.sourceText, `I live in NY\n${s1.text}\n${s2.text}`);

    const supersede = decisionOp(item, { action: 'supersede', by: s2.id, reason: 'moved' }, llm);
    assert.deepEqual(
      [supersede.op, supersede.replacementIds, supersede.validTo],
      ['supersede', [s2.id], s2.occurredAt],
    );
    const ignore = decisionOp(item, { action: 'ignore', reason: 'unrelated' }, llm);
    assert.deepEqual([ignore.op, ignore.replacements, ignore.validTo], ['ignore', [], null]);
    assert.equal(update.opId, supersede.opId, 'one decision per (target, source set, policy)');
    assert.equal(
      update.opId,
      decisionOpId(target.tenantId, target.userId, [target.id], [s2.id, s1.id], 'llm:m@abc'),
    );
    assert.notEqual(
      update.opId,
      decisionOpId(target.tenantId, target.userId, [target.id], [s1.id], 'llm:m@abc'),
    );
    assert.notEqual(
      update.opId,
      decisionOpId(target.tenantId, target.userId, [target.id], [s1.id, s2.id], 'llm:m@xyz'),
    );
  });
});
