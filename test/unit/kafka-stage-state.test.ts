import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StageState } from '../../services/adapters/kafka/stage-state.js';
import { conversationStateKey, turnStateKey } from '../../services/stages/state-keys.js';

type Message = [partition: number, key: string, value: string | null];

/** Every interleaving of the partitions' messages that keeps each partition's own order. */
function interleavings(byPartition: Message[][]): Message[][] {
  const nonEmpty = byPartition.filter((messages) => messages.length > 0);
  if (nonEmpty.length === 0) return [[]];
  return nonEmpty.flatMap((messages, index) => {
    const [first, ...rest] = messages;
    const others = nonEmpty.map((m, i) => (i === index ? rest : m));
    return interleavings(others).map((tail) => [first!, ...tail]);
  });
}

describe('StageState (the Kafka stages’ state, restored from a changelog)', () => {
  it('a key that moved partition restores to its current value whatever order the partitions are read in', () => {
    // Written from partition 2, then (its conversation's key changed) from partition 0: the same
    // transaction that wrote it on 0 deleted it on 2.
    const state = new StageState();
    state.apply(2, [{ key: 'sensory|acme/eu|u/1|chat/7', value: 'old buffer' }]);
    const moved = state.movedKeys(0, [{ key: 'sensory|acme/eu|u/1|chat/7', value: 'new buffer' }]);
    assert.deepEqual(moved, [{ key: 'sensory|acme/eu|u/1|chat/7', partition: 2 }]);
    state.apply(0, [{ key: 'sensory|acme/eu|u/1|chat/7', value: 'new buffer' }]);
    assert.equal(state.get('sensory|acme/eu|u/1|chat/7'), 'new buffer');

    const changelog: Message[][] = [
      [
        [0, 'sensory|acme/eu|u/1|chat/7', 'new buffer'],
        [0, 'other', 'x'],
      ],
      [],
      [
        [2, 'sensory|acme/eu|u/1|chat/7', 'old buffer'],
        [2, 'sensory|acme/eu|u/1|chat/7', null],
      ],
    ];
    const orders = interleavings(changelog);
    assert.equal(orders.length, 6);
    for (const order of orders) {
      const restored = new StageState();
      for (const [partition, key, value] of order)
        restored.applyChangelog(partition, key, value === null ? null : Buffer.from(value));
      assert.equal(restored.get('sensory|acme/eu|u/1|chat/7'), 'new buffer', JSON.stringify(order));
      assert.equal(restored.partitionOf('sensory|acme/eu|u/1|chat/7'), 0);
      assert.deepEqual(restored.keys(''), ['other', 'sensory|acme/eu|u/1|chat/7']);
    }
  });

  it('a replica sees only the partitions it owns', () => {
    const state = new StageState();
    state.apply(1, [{ key: 'a', value: '1' }]);
    state.apply(3, [{ key: 'b', value: '2' }]);
    assert.equal(state.get('a', new Set([3])), undefined);
    assert.equal(state.get('b', new Set([3])), '2');
    assert.deepEqual(state.keys('', new Set([1])), ['a']);
    state.apply(1, [{ key: 'a', value: null }]);
    assert.equal(state.get('a'), undefined);
    assert.deepEqual(state.movedKeys(1, [{ key: 'b', value: '3' }]), [{ key: 'b', partition: 3 }]);
  });

  it("dropOwned drops one user's keys in every partition and no one else's", () => {
    const state = new StageState();
    const alice = conversationStateKey('buf', { tenantId: 't1', userId: 'alice', conversationId: 'c1' });
    const aliceTurn = turnStateKey('seen', {
      tenantId: 't1',
      userId: 'alice',
      conversationId: 'c2',
      turnId: 'x',
    });
    const bob = conversationStateKey('buf', { tenantId: 't1', userId: 'bob', conversationId: 'c1' });
    const otherTenant = conversationStateKey('buf', {
      tenantId: 't2',
      userId: 'alice',
      conversationId: 'c1',
    });
    state.apply(0, [
      { key: alice, value: 'a' },
      { key: bob, value: 'b' },
      { key: 'count', value: '3' },
    ]);
    state.apply(1, [
      { key: aliceTurn, value: '1' },
      { key: otherTenant, value: 'c' },
    ]);
    state.dropOwned({ tenantId: 't1', userId: 'alice' });
    assert.equal(state.get(alice), undefined);
    assert.equal(state.get(aliceTurn), undefined);
    assert.equal(state.get(bob), 'b');
    assert.equal(state.get(otherTenant), 'c');
    assert.equal(state.get('count'), '3', 'keys that name no user stay');
  });
});
