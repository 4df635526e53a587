import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  chooseSetting,
  crossValidate,
  foldOf,
  objective,
  segmentGrid,
  settingLabel,
  type GridSpec,
  type QuestionCounts,
  type SegmentSetting,
} from '../../services/bench/segment-cv.js';
import { StreamSignals, gridCounts } from '../../services/bench/segment-cv-grid.js';
import { countBoundaries, segmentStream, type BoundaryCounts } from '../../services/bench/segment-bench.js';
import { BuiltinTokenScorer } from '../../services/stages/compressor/builtin-token-scorer.js';
import { HybridSegmenter, defaultHybridSettings } from '../../services/stages/segmenter/hybrid-segmenter.js';
import type { AttentionModel } from '../../services/core/ports/segmenter.js';
import type { Embedder } from '../../services/core/ports/embedder.js';
import type { TurnInput } from '../../services/ingest/index.js';

const counts = (predicted: number, gold: number, exact: number, nearby = exact): BoundaryCounts => ({
  predicted,
  gold,
  exact,
  nearby,
});

describe('fold split', () => {
  const ids = Array.from({ length: 200 }, (_, i) => `q${i.toString(16).padStart(6, '0')}`);

  it('puts every question in one fold in range, the same one on every call', () => {
    for (const id of ids) {
      const fold = foldOf(id, 5);
      assert.ok(Number.isInteger(fold) && fold >= 0 && fold < 5);
      assert.equal(foldOf(id, 5), fold);
    }
  });

  it('depends on the id alone (a question keeps its fold when others are added or removed)', () => {
    // A salted sha256 of the id, not a position in the file.
    const expected = createHash('sha256').update('segment-cv:q000007').digest().readUInt32BE(0) % 5;
    assert.equal(foldOf('q000007', 5), expected);
    const sizes = (list: readonly string[]): number[] => {
      const rows = list.map((id) => ({ id, counts: [counts(1, 1, 1)] }));
      return crossValidate(rows, 1, 5, 'f1-near').folds.map((f) => f.questions);
    };
    const expectedSizes = (list: readonly string[]): number[] =>
      [0, 1, 2, 3, 4].map((fold) => list.filter((id) => foldOf(id, 5) === fold).length).filter((n) => n > 0);
    assert.deepEqual(sizes(ids), expectedSizes(ids), 'cross-validation uses foldOf by default');
    assert.deepEqual(sizes(ids.slice(0, 100)), expectedSizes(ids.slice(0, 100)));
    assert.equal(
      sizes(ids).reduce((a, b) => a + b, 0),
      ids.length,
      'every question is held out exactly once',
    );
  });

  it('gives folds of similar size', () => {
    const sizes = new Array<number>(5).fill(0);
    for (const id of ids) sizes[foldOf(id, 5)]!++;
    for (const size of sizes) assert.ok(size >= 25 && size <= 55, `fold sizes ${sizes.join('/')}`);
  });
});

describe('setting selection', () => {
  it('scores F1 (and F2) of pooled counts, exact or within ±1 exchange', () => {
    const c = counts(4, 3, 1, 2);
    assert.equal(objective('f1-exact', c), (2 * 1) / 7);
    assert.equal(objective('f1-near', c), (2 * 2) / 7);
    assert.equal(objective('f2-near', c), (5 * 2) / (4 * 3 + 4));
    assert.equal(objective('f1-near', counts(0, 0, 0)), 0);
  });

  it('breaks ties toward the earlier setting (the grid starts with the current defaults)', () => {
    const rows: QuestionCounts[] = [{ id: 'a', counts: [counts(2, 2, 1), counts(2, 2, 1)] }];
    assert.equal(chooseSetting(rows, 2, 'f1-exact').index, 0);
  });

  it('never chooses a fold’s setting with the held-out fold: a leak would pick B for fold 0', () => {
    // Fold = first character. On folds 1 and 2, A is a little better than B; on fold 0 B is perfect and A
    // finds nothing, so over all questions B wins by far. Fold 0's setting must still be A.
    const assign = (id: string): number => Number(id[0]);
    const rows: QuestionCounts[] = [];
    for (let i = 0; i < 10; i++) {
      rows.push({ id: `0-${i}`, counts: [counts(10, 10, 0), counts(10, 10, 10)] });
      rows.push({ id: `1-${i}`, counts: [counts(10, 10, 6), counts(10, 10, 5)] });
      rows.push({ id: `2-${i}`, counts: [counts(10, 10, 6), counts(10, 10, 5)] });
    }
    const cv = crossValidate(rows, 2, 3, 'f1-exact', assign);
    const fold0 = cv.folds.find((f) => f.fold === 0);
    assert.equal(fold0?.chosen, 0, 'fold 0 is scored with the setting chosen on folds 1 and 2');
    assert.deepEqual(fold0?.heldOut, counts(100, 100, 0));
    assert.equal(fold0?.trainScore, 0.6);
    // Folds 1 and 2 are chosen with fold 0 in their training data: B (0.75 vs 0.3).
    assert.deepEqual(
      cv.folds.map((f) => f.chosen),
      [0, 1, 1],
    );
    assert.deepEqual(cv.heldOut, counts(300, 300, 100), 'pooled held-out = the folds summed');
    assert.equal(cv.allQuestions.index, 1, 'in-sample, B wins');
    assert.deepEqual(cv.base, counts(300, 300, 120));
  });

  it('skips folds with no question', () => {
    const rows: QuestionCounts[] = [
      { id: 'x', counts: [counts(1, 1, 1)] },
      { id: 'y', counts: [counts(1, 1, 0)] },
    ];
    const cv = crossValidate(rows, 1, 4, 'f1-near', (id) => (id === 'x' ? 0 : 2));
    assert.deepEqual(
      cv.folds.map((f) => [f.fold, f.questions]),
      [
        [0, 1],
        [2, 1],
      ],
    );
  });
});

describe('segmentGrid', () => {
  const base: SegmentSetting = { ...defaultHybridSettings, bufferTokens: 512 };
  const spec: GridSpec = {
    rules: ['intersection', 'union', 'similarity', 'attention'],
    windows: [1, 3],
    sinkTokens: [1, 3],
    unitWords: [32, 64],
    depthStdFactors: [0, 0.5],
    depthFloors: [0.1],
    adaptive: [[0.2, 0.05, 0.5]],
    bufferTokens: [512],
  };

  it('starts with the base setting and lists each distinct setting once', () => {
    const grid = segmentGrid(base, spec);
    assert.equal(settingLabel(grid[0]!), settingLabel(base));
    const labels = grid.map(settingLabel);
    assert.equal(new Set(labels).size, labels.length);
    // similarity criteria: 2 unit sizes × (2 depth + 1 adaptive) = 6.
    // intersection 2 windows × 2 sinks × 6 + union 2 sinks × 6 + similarity 6 + attention 2 sinks.
    assert.equal(grid.length, 24 + 12 + 6 + 2);
  });
});

describe('gridCounts', () => {
  // Three sessions on different subjects; each exchange is a user turn and a reply.
  const subjects = ['tomatoes garden soil', 'flight Lisbon hotel', 'tax return deadline'];
  const turn = (s: number, i: number, role: 'user' | 'assistant'): TurnInput => ({
    kind: 'turn',
    tenantId: 't',
    userId: 'q1',
    agentId: null,
    conversationId: 'q1',
    sessionId: `s${s}`,
    turnId: `s${s}:${i}`,
    seq: s * 100 + i,
    role,
    speaker: role,
    text:
      role === 'user'
        ? `question ${i} about ${subjects[s]} and a few more words to count for the buffer`
        : `reply ${i} on ${subjects[s]}: some advice with details`,
    occurredAt: 0,
    zoneOffset: '+00:00',
    metadata: {},
  });
  const stream: TurnInput[] = [];
  for (let s = 0; s < 3; s++)
    for (let i = 0; i < 8; i++) stream.push(turn(s, i, i % 2 === 0 ? 'user' : 'assistant'));

  /** Vectors by subject with a little per-text noise; the embedder counts what it embeds. */
  const embedded: string[] = [];
  const embedder: Embedder = {
    id: 'fake',
    dims: 4,
    embed: (texts) => {
      embedded.push(...texts);
      return Promise.resolve(
        texts.map((text) => {
          const s = subjects.findIndex((subject) => text.includes(subject));
          const noise = (text.length % 7) / 20;
          const v = new Float32Array(4).fill(0.1);
          v[Math.max(0, s)] = 1;
          v[3] = noise;
          return v;
        }),
      );
    },
  };
  /** Each sentence attends to its predecessor when their subjects differ or its index is odd. */
  const attention: AttentionModel = {
    id: 'fake',
    attention: (sentences) => {
      const width = 3;
      const spans = sentences.map((_, i) => ({ start: 1 + i * width, end: 1 + (i + 1) * width }));
      const length = sentences.length * width + 2;
      const of = (p: number): number => (p <= 0 || p >= length - 1 ? -1 : Math.floor((p - 1) / width));
      const subject = (i: number): number => subjects.findIndex((x) => sentences[i]?.includes(x) === true);
      const matrix = Array.from({ length }, (_, q) =>
        Array.from({ length }, (_, k) => {
          const from = of(q);
          const to = of(k);
          const strong = from > 0 && to === from - 1 && (subject(from) !== subject(to) || from % 3 === 1);
          return strong ? 1 : 0.02;
        }),
      );
      return Promise.resolve({ matrix, spans });
    },
  };
  const base: SegmentSetting = { ...defaultHybridSettings, bufferTokens: 60 };
  const grid = segmentGrid(base, {
    rules: ['intersection', 'union', 'similarity', 'attention'],
    windows: [0, 1, 3],
    sinkTokens: [1, 3],
    unitWords: [4, 0],
    depthStdFactors: [0, 0.5, 1.5],
    depthFloors: [0.05, 0.3],
    adaptive: [
      [0.2, 0.05, 0.5],
      [0.6, 0.05, 0.95],
    ],
    bufferTokens: [60, 120],
  });
  const settings = {
    compression: { rate: 1, maxTokens: 512, recompressRate: 0.5 },
    countedRoles: new Set(['user'] as const),
  };

  it('gives every setting the counts of running the stage with a HybridSegmenter of that setting', async () => {
    const signals = new StreamSignals(attention, embedder);
    const scorer = new BuiltinTokenScorer();
    const { counts: table, runs } = await gridCounts(stream, grid, signals, scorer, settings);
    assert.ok(runs < grid.length, `${runs} stage runs for ${grid.length} settings`);
    assert.ok(new Set(table.map((c) => JSON.stringify(c))).size > 1, 'the settings do differ');
    for (const [i, setting] of grid.entries()) {
      const { predicted, gold } = await segmentStream(
        stream,
        new HybridSegmenter(attention, embedder, setting),
        scorer,
        { ...settings, capacityTokens: setting.bufferTokens },
      );
      assert.deepEqual(table[i], countBoundaries(predicted, gold), settingLabel(setting));
    }
  });

  it('embeds each distinct text once and runs attention once per distinct buffer', async () => {
    embedded.length = 0;
    const sequences: string[] = [];
    const counting: AttentionModel = {
      id: 'counting',
      attention: (sentences) => {
        sequences.push(JSON.stringify(sentences));
        return attention.attention(sentences);
      },
    };
    const signals = new StreamSignals(counting, embedder);
    await gridCounts(stream, grid, signals, new BuiltinTokenScorer(), settings);
    assert.equal(new Set(embedded).size, embedded.length);
    assert.equal(signals.calls.embedded, embedded.length);
    assert.ok(sequences.length > 1);
    assert.equal(new Set(sequences).size, sequences.length);
  });
});
