import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tokenBudgetBatches } from '../../services/adapters/onnx/batching.js';

/** Rows × padded length of each batch (the padded length is the longest row). */
function shapes(lengths: readonly number[], batches: readonly (readonly number[])[]): string[] {
  return batches.map((batch) => `${batch.length}x${Math.max(...batch.map((i) => lengths[i] ?? 0))}`);
}

describe('tokenBudgetBatches', () => {
  it('cuts sorted lengths within the padded-token budget, short texts many at a time', () => {
    const lengths = [10, 500, 12, 11, 300, 10, 13, 480];
    const batches = tokenBudgetBatches(lengths, { maxRows: 32, maxTokens: 1000 });
    assert.deepEqual(batches, [[0, 5, 3, 2, 6], [4, 7], [1]]);
    assert.deepEqual(shapes(lengths, batches), ['5x13', '2x480', '1x500']);
    for (const batch of batches) {
      const padded = batch.length * Math.max(...batch.map((i) => lengths[i] ?? 0));
      assert.ok(padded <= 1000, `${padded} padded tokens`);
    }
  });

  it('where fixed batches pad 31 short texts to one long one, the long one runs on its own', () => {
    const lengths = [...Array.from({ length: 31 }, () => 20), 512];
    const batches = tokenBudgetBatches(lengths, { maxRows: 32, maxTokens: 4096 });
    assert.deepEqual(shapes(lengths, batches), ['31x20', '1x512']);
  });

  it('caps the rows of a batch', () => {
    const lengths = Array.from({ length: 10 }, () => 5);
    assert.deepEqual(
      tokenBudgetBatches(lengths, { maxRows: 4, maxTokens: 1_000_000 }).map((b) => b.length),
      [4, 4, 2],
    );
  });

  it('a text longer than the budget runs alone; empty texts count as one token', () => {
    const lengths = [0, 0, 900, 3];
    const batches = tokenBudgetBatches(lengths, { maxRows: 32, maxTokens: 100 });
    assert.deepEqual(batches, [[0, 1, 3], [2]]);
  });

  it('keeps every index exactly once, equal lengths in input order', () => {
    const lengths = [7, 3, 7, 3, 7, 3, 100, 1];
    const batches = tokenBudgetBatches(lengths, { maxRows: 3, maxTokens: 21 });
    assert.deepEqual(
      batches.flat().sort((a, b) => a - b),
      lengths.map((_, i) => i),
    );
    assert.deepEqual(batches, [[7, 1, 3], [5, 0, 2], [4], [6]]);
    assert.deepEqual(tokenBudgetBatches([], { maxRows: 3, maxTokens: 10 }), []);
  });
});
