import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  chunkTokens,
  keepProbability,
  mergeSubwords,
} from '../../services/stages/compressor/subword-words.js';
import { selectWords } from '../../services/stages/compressor/percentile-selection.js';

const close = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9;

describe('LLMLingua-2 word merging', () => {
  it('keep probability is softmax over the two labels, label 1 = keep', () => {
    assert.ok(close(keepProbability(0, 0), 0.5));
    assert.ok(close(keepProbability(0, Math.log(3)), 0.75));
    assert.ok(close(keepProbability(1000, 0), 0)); // no overflow
  });

  it('merges WordPiece continuations and averages their probabilities', () => {
    const tokens = ['I', 'went', 'to', 'a', 'LG', '##BT', '##Q', 'support', 'group', '.'];
    const logits: [number, number][] = [
      [2, 0],
      [0, 1],
      [3, 0],
      [3, 0],
      [0, 2],
      [0, 4],
      [0, 0],
      [0, 3],
      [0, 2],
      [4, 0],
    ];
    const probabilities = logits.map(([drop, keep]) => keepProbability(drop, keep));
    const words = mergeSubwords(tokens, probabilities, 'wordpiece');
    assert.deepEqual(
      words.map((w) => w.word),
      ['I', 'went', 'to', 'a', 'LGBTQ', 'support', 'group', '.'],
    );
    const lgbtq = words[4]!;
    assert.ok(close(lgbtq.keep, (probabilities[4]! + probabilities[5]! + probabilities[6]!) / 3));
    // r = 0.5: probabilities replicated per token ("support" costs 2), percentile at 51 → 0.7356;
    // "went" (0.731) falls just below it.
    assert.deepEqual(
      selectWords(words, 0.5).map((w) => w.word),
      ['LGBTQ', 'support', 'group'],
    );
  });

  it('merges SentencePiece pieces (▁ starts a word)', () => {
    const words = mergeSubwords(
      ['▁sup', 'port', '▁group', '▁yes', 'ter', 'day'],
      [0.9, 0.7, 0.8, 0.3, 0.5, 0.4],
      'sentencepiece',
    );
    assert.deepEqual(
      words.map((w) => w.word),
      ['support', 'group', 'yesterday'],
    );
    assert.ok(close(words[0]!.keep, 0.8));
    assert.ok(close(words[2]!.keep, 0.4));
  });
});

describe('chunking to the model length', () => {
  it('prefers to end a chunk after a sentence end', () => {
    const tokens = ['a', 'b', '.', 'c', 'd', 'e', '.', 'f'];
    assert.deepEqual(chunkTokens(tokens, 5, 'wordpiece'), [
      [0, 3],
      [3, 8],
    ]);
    assert.deepEqual(chunkTokens([...tokens, 'g', 'h'], 5, 'wordpiece'), [
      [0, 3],
      [3, 7],
      [7, 10],
    ]);
  });

  it('never splits a word, and covers every token exactly once', () => {
    const tokens = ['x', '##y', '##z', 'w', '##v', 'u', '##t', '##s', 'r'];
    const chunks = chunkTokens(tokens, 4, 'wordpiece');
    assert.deepEqual(chunks, [
      [0, 3],
      [3, 5],
      [5, 9],
    ]);
    for (const [start] of chunks) assert.ok(!tokens[start]!.startsWith('##'));
    const long = Array.from({ length: 1300 }, (_, i) => (i % 7 === 6 ? '.' : `w${i}`));
    const covered = chunkTokens(long, 510, 'wordpiece');
    assert.equal(covered[0]![0], 0);
    assert.equal(covered.at(-1)![1], 1300);
    for (let i = 1; i < covered.length; i++) assert.equal(covered[i]![0], covered[i - 1]![1]);
    for (const [s, e] of covered) assert.ok(e - s <= 510);
  });
});
