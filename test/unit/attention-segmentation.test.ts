import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  attentionPeaks,
  combineBoundaries,
  sentenceAttention,
  sinkMask,
} from '../../services/stages/segmenter/attention-boundaries.js';
import { HybridSegmenter, defaultHybridSettings } from '../../services/stages/segmenter/hybrid-segmenter.js';
import type { AttentionModel, Boundary, SegmentableTurn } from '../../services/core/ports/segmenter.js';
import type { Embedder } from '../../services/core/ports/embedder.js';

/** CLS + n sentences of `width` tokens + SEP; attention `base` everywhere, `strong` where focus(q, k) says. */
function synthetic(
  sentences: number,
  width: number,
  focus: (fromSentence: number, toSentence: number) => boolean,
  base = 0.01,
  strong = 1,
): { matrix: number[][]; spans: { start: number; end: number }[] } {
  const spans = Array.from({ length: sentences }, (_, i) => ({
    start: 1 + i * width,
    end: 1 + (i + 1) * width,
  }));
  const length = sentences * width + 2;
  const sentenceOf = (p: number): number => (p === 0 || p === length - 1 ? -1 : Math.floor((p - 1) / width));
  const matrix = Array.from({ length }, (_, q) =>
    Array.from({ length }, (_, k) => {
      const from = sentenceOf(q);
      const to = sentenceOf(k);
      return from >= 0 && to >= 0 && focus(from, to) ? strong : base;
    }),
  );
  return { matrix, spans };
}

describe('attention boundaries (B1)', () => {
  it('masks attention-sink positions at both ends, and fewer on short sequences', () => {
    assert.deepEqual(
      sinkMask(10, 3).map((v) => (v ? 1 : 0)),
      [0, 0, 0, 1, 1, 1, 1, 0, 0, 0],
    );
    assert.deepEqual(sinkMask(5, 3), [true, true, true, true, true]); // ⌊5/10⌋ = 0 masked
    assert.deepEqual(sinkMask(40, 3).filter((v) => !v).length, 6);
  });

  it('normalises each sentence row over its predecessors', () => {
    const { matrix, spans } = synthetic(4, 3, () => false);
    const m = sentenceAttention(matrix, spans, 0);
    assert.deepEqual(m[0], [0, 0, 0, 0]);
    assert.deepEqual(m[1], [1, 0, 0, 0]);
    for (const v of m[2]!.slice(0, 2)) assert.ok(Math.abs(v - 0.5) < 1e-12);
    for (const v of m[3]!.slice(0, 3)) assert.ok(Math.abs(v - 1 / 3) < 1e-12);
    assert.equal(m[2]![2], 0); // upper triangle stays 0
  });

  it('finds the strict local peaks of the sentence-to-previous series: the topic starts at the attended sentence', () => {
    // Sentence 3 attends almost only to sentence 2: M[3][2] peaks, so sentence 2 starts a topic.
    const { matrix, spans } = synthetic(6, 3, (from, to) => from === 3 && to === 2);
    const m = sentenceAttention(matrix, spans, 1);
    assert.ok(m[3]![2]! > 0.9, `M[3][2] = ${m[3]![2]}`);
    assert.deepEqual(attentionPeaks(m), [2]);
  });

  it('cannot place a topic start at the second sentence: M[1][0] is always 1 after normalisation', () => {
    const { matrix, spans } = synthetic(6, 3, (from, to) => from === 2 && to === 1);
    assert.deepEqual(attentionPeaks(sentenceAttention(matrix, spans, 1)), []);
  });

  it('reads peaks from a hand-made matrix; the series ends are never peaks', () => {
    const sub = [1, 0.2, 0.9, 0.3, 0.8, 0.1]; // M[k][k-1] for k = 1..6
    const m = Array.from({ length: 7 }, (_, i) =>
      Array.from({ length: 7 }, (_, j) => (j === i - 1 ? sub[i - 1]! : 0)),
    );
    assert.deepEqual(attentionPeaks(m), [2, 4]);
    assert.deepEqual(attentionPeaks([[0], [1, 0]]), []);
  });

  it('masked sink tokens do not count', () => {
    // Sentence 0 is only sink tokens once 3 are masked at the start (CLS + its 2 tokens).
    const { matrix, spans } = synthetic(5, 2, (from, to) => to === 0 && from > 0, 0.01, 50);
    const masked = sentenceAttention(matrix, spans, 3);
    assert.equal(masked[1]![0], 0);
    const unmasked = sentenceAttention(matrix, spans, 0);
    assert.ok(unmasked[2]![0]! > 0.9);
  });
});

describe('combining attention peaks and similarity drops', () => {
  const sim = (index: number): Boundary => ({
    index,
    reason: 'similarity_drop',
    similarity: 0.1,
    threshold: 0.2,
  });
  const fromPeak = (index: number): Boundary => ({
    index,
    reason: 'attention_peak',
    similarity: null,
    threshold: null,
  });

  it('intersection keeps similarity boundaries within ±window of a peak (the paper rule)', () => {
    assert.deepEqual(
      combineBoundaries([3], [sim(1), sim(5), sim(9)], 'intersection', 3, fromPeak).map((b) => b.index),
      [1, 5],
    );
    assert.deepEqual(
      combineBoundaries([3], [sim(1), sim(5), sim(9)], 'intersection', 1, fromPeak).map((b) => b.index),
      [],
      'no silent fallback to similarity-only when nothing survives',
    );
  });

  it('union, attention-only and similarity-only for ablations', () => {
    assert.deepEqual(
      combineBoundaries([3, 7], [sim(3), sim(5)], 'union', 3, fromPeak).map((b) => [b.index, b.reason]),
      [
        [3, 'similarity_drop'],
        [5, 'similarity_drop'],
        [7, 'attention_peak'],
      ],
    );
    assert.deepEqual(
      combineBoundaries([3, 7], [sim(5)], 'attention', 3, fromPeak).map((b) => b.index),
      [3, 7],
    );
    assert.deepEqual(
      combineBoundaries([3, 7], [sim(5)], 'similarity', 3, fromPeak).map((b) => b.index),
      [5],
    );
  });
});

describe('HybridSegmenter', () => {
  // Units: every human turn starts one; the assistant turn joins the unit before it.
  const turns: SegmentableTurn[] = [
    { role: 'user', text: 'a' },
    { role: 'assistant', text: 'a reply' },
    { role: 'user', text: 'b' },
    { role: 'user', text: 'c' },
    { role: 'user', text: 'd' },
    { role: 'user', text: 'e' },
  ];
  // Unit u starts at turn [0, 2, 3, 4, 5][u].
  const embedderWithDropBefore = (unit: number): Embedder => ({
    id: 'fake-embedder',
    dims: 2,
    embed: (texts) =>
      Promise.resolve(texts.map((_, u) => (u < unit ? new Float32Array([1, 0]) : new Float32Array([0, 1])))),
  });
  const attentionPeakAt = (unit: number, seen: string[][] = []): AttentionModel => ({
    id: 'fake-attention',
    attention: (sentences) => {
      seen.push([...sentences]);
      const { matrix, spans } = synthetic(
        sentences.length,
        3,
        (from, to) => from === unit + 1 && to === unit,
      );
      return Promise.resolve({ matrix, spans });
    },
  });

  it('cuts where a similarity drop lies near an attention peak, reported as a turn index', async () => {
    const seen: string[][] = [];
    const segmenter = new HybridSegmenter(attentionPeakAt(2, seen), embedderWithDropBefore(2), {
      ...defaultHybridSettings,
      sinkTokens: 1,
    });
    const cuts = await segmenter.boundaries(turns);
    assert.deepEqual(
      cuts.map((b) => [b.index, b.reason]),
      [[3, 'hybrid']],
    );
    assert.equal(cuts[0]!.similarity, 0);
    assert.deepEqual(seen[0], ['a', 'b', 'c', 'd', 'e'], 'attention reads the human turns only');
  });

  it('drops a similarity boundary far from every peak (window 0)', async () => {
    const segmenter = new HybridSegmenter(attentionPeakAt(2), embedderWithDropBefore(1), {
      ...defaultHybridSettings,
      toleranceWindow: 0,
      sinkTokens: 1,
    });
    assert.deepEqual(await segmenter.boundaries(turns), []);
  });

  it('attention-only rule reports the peak without embedding anything', async () => {
    let embedded = 0;
    const embedder: Embedder = {
      id: 'counting',
      dims: 2,
      embed: (texts) => {
        embedded += texts.length;
        return Promise.resolve(texts.map(() => new Float32Array([1, 0])));
      },
    };
    const segmenter = new HybridSegmenter(attentionPeakAt(2), embedder, {
      ...defaultHybridSettings,
      rule: 'attention',
      sinkTokens: 1,
    });
    assert.deepEqual(
      (await segmenter.boundaries(turns)).map((b) => [b.index, b.reason]),
      [[3, 'attention_peak']],
    );
    assert.equal(embedded, 0);
  });

  it('its version names both models and the rule (memory ids change when they do)', () => {
    const segmenter = new HybridSegmenter(attentionPeakAt(2), embedderWithDropBefore(2));
    assert.match(segmenter.version, /fake-attention.*fake-embedder.*intersection±3/);
  });
});
