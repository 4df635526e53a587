import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applySessionContext } from '../../services/app/session-context.js';

const hit = (id: string, session: string, score: number, turn = id) => ({
  item: { id, session, turn },
  score,
  cues: [] as string[],
});
const ids = (hits: readonly { item: { id: string } }[]): string[] => hits.map((h) => h.item.id);

describe('session context in ranking', () => {
  it('lifts a hit whose session holds another strong hit above an equal hit alone in its session', () => {
    const hits = [hit('alone', 's1', 0.6), hit('paired', 's2', 0.59), hit('anchor', 's2', 0.8)];
    const ranked = applySessionContext(hits, (i) => i, 0.4);
    assert.deepEqual(ids(ranked), ['anchor', 'paired', 'alone']);
    // anchor: (0.8 + 0.4·0.59) / 1.4; paired: (0.59 + 0.4·0.8) / 1.4; alone: 0.6 / 1.4.
    assert.ok(Math.abs((ranked[0]?.score ?? 0) - (0.8 + 0.4 * 0.59) / 1.4) < 1e-12);
    assert.ok(Math.abs((ranked[2]?.score ?? 0) - 0.6 / 1.4) < 1e-12);
  });

  it('does not reorder when every hit is alone in its session, or when the boost is 0', () => {
    const hits = [hit('a', 's1', 0.9), hit('b', 's2', 0.5), hit('c', 's3', 0.4)];
    assert.deepEqual(ids(applySessionContext(hits, (i) => i, 0.4)), ['a', 'b', 'c']);
    const mixed = [hit('a', 's1', 0.9), hit('b', 's2', 0.5), hit('c', 's1', 0.45)];
    assert.deepEqual(
      applySessionContext(mixed, (i) => i, 0),
      mixed,
    );
  });

  it('does not let chunks of one turn vouch for each other', () => {
    const hits = [
      hit('chunk1', 's1', 0.9, 't1'),
      hit('chunk2', 's1', 0.5, 't1'),
      hit('other', 's2', 0.52, 'u1'),
    ];
    const ranked = applySessionContext(hits, (i) => i, 0.4);
    assert.deepEqual(ids(ranked), ['chunk1', 'other', 'chunk2']);
  });

  it('uses the second best of a session for its best hit (a hit does not count itself)', () => {
    const hits = [hit('top', 's1', 0.9), hit('weak', 's1', 0.1), hit('other', 's2', 0.85)];
    const ranked = applySessionContext(hits, (i) => i, 1);
    // top: (0.9 + 0.1) / 2 = 0.5; other alone: 0.425; weak: (0.1 + 0.9) / 2 = 0.5 (tie: input order).
    assert.deepEqual(ids(ranked), ['top', 'weak', 'other']);
  });
});
