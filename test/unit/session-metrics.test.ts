import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sessionFigures, sessionMetricsAt, sessionOfTurn } from '../../services/bench/session-metrics.js';

describe("LongMemEval's session-level metrics", () => {
  it('maps a turn id to its session, session ids with colons included', () => {
    assert.equal(sessionOfTurn('answer_ab12:3'), 'answer_ab12');
    assert.equal(sessionOfTurn('s:x:10'), 's:x');
  });

  it('counts k in distinct sessions: many memories of one session take one of the k places', () => {
    const gold = ['answer_a:2'];
    // Five memories of session s1, then the gold: with k = 2 distinct sessions, the gold is the second.
    const ranked = [['s1:0'], ['s1:1'], ['s1:2'], ['s1:3'], ['s1:4'], ['answer_a:2']];
    assert.equal(sessionMetricsAt({ gold, ranked }, 2).recallAny, 1);
    assert.equal(sessionMetricsAt({ gold, ranked }, 1).recallAny, 0);
  });

  it('a memory of an answer session without a gold turn is not the gold session (the script renames it noans)', () => {
    const gold = ['answer_a:2'];
    const ranked = [['answer_a:0'], ['s2:0'], ['s3:1'], ['answer_a:2']];
    const at3 = sessionMetricsAt({ gold, ranked }, 3);
    assert.equal(at3.recallAny, 0, 'answer_a:0 alone does not recall the session');
    assert.equal(sessionMetricsAt({ gold, ranked }, 4).recallAny, 1);
  });

  it('recall_all needs every gold session; recall_any one of them', () => {
    const gold = ['answer_a:1', 'answer_b:3'];
    const ranked = [['answer_a:1'], ['x:0'], ['y:0'], ['z:0'], ['w:0'], ['answer_b:3']];
    const at5 = sessionMetricsAt({ gold, ranked }, 5);
    assert.deepEqual([at5.recallAny, at5.recallAll], [1, 0]);
    const at10 = sessionMetricsAt({ gold, ranked }, 10);
    assert.deepEqual([at10.recallAny, at10.recallAll], [1, 1]);
  });

  it('ndcg_any is 1 for the ideal ranking and falls as the gold moves down', () => {
    const gold = ['answer_a:1'];
    assert.equal(sessionMetricsAt({ gold, ranked: [['answer_a:1'], ['x:0']] }, 10).ndcgAny, 1);
    const second = sessionMetricsAt({ gold, ranked: [['x:0'], ['answer_a:1']] }, 10).ndcgAny;
    // DCG of [0, 1] is 1/log2(2) = 1: position 2 is not discounted in the script's dcg either.
    assert.equal(second, 1);
    const third = sessionMetricsAt({ gold, ranked: [['x:0'], ['y:0'], ['answer_a:1']] }, 10).ndcgAny;
    assert.ok(Math.abs(third - 1 / Math.log2(3)) < 1e-12);
    assert.equal(sessionMetricsAt({ gold, ranked: [['x:0']] }, 10).ndcgAny, 0);
  });

  it('means over questions with gold user turns only', () => {
    const figures = sessionFigures([
      { gold: ['answer_a:1'], ranked: [['answer_a:1']] },
      { gold: ['answer_b:1'], ranked: [['x:0']] },
      { gold: [], ranked: [['answer_c:0']] },
    ]);
    assert.equal(figures.questions, 2);
    assert.equal(figures.metrics['recall_any@10'], 0.5);
    assert.equal(figures.metrics['recall_all@5'], 0.5);
  });
});
