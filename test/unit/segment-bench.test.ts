import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { countBoundaries, scores, segmentStream } from '../../services/bench/segment-bench.js';
import { BuiltinTokenScorer } from '../../services/stages/compressor/builtin-token-scorer.js';
import type { Boundary, Segmenter } from '../../services/core/ports/segmenter.js';
import type { TurnInput } from '../../services/ingest/index.js';

describe('boundary scoring', () => {
  it('counts exact matches and matches within ±1, each gold boundary once', () => {
    assert.deepEqual(countBoundaries([3, 7, 8, 12], [3, 8, 20]), {
      predicted: 4,
      gold: 3,
      exact: 2,
      nearby: 2,
    });
    assert.deepEqual(countBoundaries([4, 9], [3, 8]), { predicted: 2, gold: 2, exact: 0, nearby: 2 });
    assert.deepEqual(countBoundaries([], [5]), { predicted: 0, gold: 1, exact: 0, nearby: 0 });
  });

  it('precision, recall and F1', () => {
    assert.deepEqual(scores(2, 4, 3), { precision: 0.5, recall: 0.6667, f1: 0.5714 });
    assert.deepEqual(scores(0, 0, 0), { precision: 0, recall: 0, f1: 0 });
  });
});

describe('segmentStream', () => {
  const turn = (i: number, sessionId: string): TurnInput => ({
    kind: 'turn',
    tenantId: 't',
    userId: 'q1',
    agentId: null,
    conversationId: 'q1',
    sessionId,
    turnId: `${sessionId}:${i}`,
    seq: i,
    role: 'user',
    speaker: 'user',
    text: `turn number ${i} of ${sessionId} with some words to count`,
    occurredAt: 0,
    zoneOffset: '+00:00',
    metadata: {},
  });
  const stream = [turn(0, 'a'), turn(1, 'a'), turn(2, 'b'), turn(3, 'b'), turn(4, 'c')];

  it('reports session starts as gold and the segmenter cuts as predictions, ignoring session ends', async () => {
    const cutAtTwo: Segmenter = {
      version: 'fixed',
      capability: 'test',
      boundaries: (turns) =>
        Promise.resolve(
          turns.length > 2
            ? [{ index: 2, reason: 'similarity_drop', similarity: 0.1, threshold: 0.2 } satisfies Boundary]
            : [],
        ),
    };
    const { predicted, gold } = await segmentStream(stream, cutAtTwo, new BuiltinTokenScorer(), {
      compression: { rate: 1, maxTokens: 512, recompressRate: 0.5 },
      capacityTokens: 10_000,
      countedRoles: new Set(['user']),
    });
    assert.deepEqual(gold, [2, 4]);
    // Everything stays buffered until the end of the stream, where the fixed boundary cuts at turn 2.
    assert.deepEqual(predicted, [2]);
  });

  it('counts in exchanges (a human turn and its replies), so ±1 is one exchange, not one reply', async () => {
    const reply = (i: number, sessionId: string): TurnInput => ({
      ...turn(i, sessionId),
      role: 'assistant',
      speaker: 'assistant',
    });
    // Exchanges: 0 = [u0 a1], 1 = [u2 a3] (session b starts), 2 = [u4 a5].
    const dialogue = [turn(0, 'a'), reply(1, 'a'), turn(2, 'b'), reply(3, 'b'), turn(4, 'b'), reply(5, 'b')];
    const cutAtTurnFour: Segmenter = {
      version: 'fixed',
      capability: 'test',
      boundaries: (turns) =>
        Promise.resolve(
          turns.length > 4
            ? [{ index: 4, reason: 'similarity_drop', similarity: 0.1, threshold: 0.2 } satisfies Boundary]
            : [],
        ),
    };
    const { predicted, gold } = await segmentStream(dialogue, cutAtTurnFour, new BuiltinTokenScorer(), {
      compression: { rate: 1, maxTokens: 512, recompressRate: 0.5 },
      capacityTokens: 10_000,
      countedRoles: new Set(['user']),
    });
    assert.deepEqual(gold, [1]);
    assert.deepEqual(predicted, [2]);
    assert.equal(countBoundaries(predicted, gold).nearby, 1, 'one exchange late is within ±1');
  });
});
