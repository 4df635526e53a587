import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  allAtK,
  evidenceFigures,
  recallAtBudget,
  recallAtK,
  takenWithinBudget,
  type RankedEvidence,
} from '../../services/bench/evidence-metrics.js';
import { promptText } from '../../services/bench/prompt-text.js';
import { recallChartSvg } from '../../services/bench/recall-chart.js';

const m = (sources: string[], tokens = 10): RankedEvidence => ({ sources, tokens });

describe('R@k and All@k', () => {
  const ranked = [m(['D1:1']), m(['D1:2', 'D1:3']), m(['D9:9']), m(['D2:1']), m(['D1:1'])];

  it('R@k is the share of gold ids among the sources of the top k', () => {
    const gold = ['D1:3', 'D2:1'];
    assert.equal(recallAtK(gold, ranked, 1), 0);
    assert.equal(recallAtK(gold, ranked, 2), 0.5);
    assert.equal(recallAtK(gold, ranked, 3), 0.5);
    assert.equal(recallAtK(gold, ranked, 4), 1);
    assert.equal(recallAtK(gold, ranked, 50), 1, 'k beyond the list takes the whole list');
    assert.equal(recallAtK(gold, [], 5), 0);
  });

  it('counts a gold id once, however many memories carry it, and duplicate gold ids once', () => {
    assert.equal(recallAtK(['D1:1', 'D1:1', 'D7:7'], ranked, 5), 0.5);
  });

  it('All@k holds only when every gold id is in the top k', () => {
    assert.equal(allAtK(['D1:3', 'D2:1'], ranked, 3), false);
    assert.equal(allAtK(['D1:3', 'D2:1'], ranked, 4), true);
    assert.equal(allAtK(['D1:1'], ranked, 1), true);
  });

  it('refuses a question without gold (it cannot be scored)', () => {
    assert.throws(() => recallAtK([], ranked, 5), RangeError);
  });
});

describe('R@B: memories taken in rank order until the token budget is full', () => {
  const ranked = [m(['a'], 300), m(['b'], 200), m(['c'], 600), m(['d'], 10)];

  it('takes memories while the running total stays within the budget (exactly full counts)', () => {
    assert.equal(takenWithinBudget(ranked, 500), 2, '300 + 200 = 500 fits exactly');
    assert.equal(takenWithinBudget(ranked, 499), 1);
    assert.equal(takenWithinBudget(ranked, 1100), 3);
    assert.equal(takenWithinBudget(ranked, 1110), 4);
  });

  it('stops at the first memory that would overflow, even if a later one would fit', () => {
    // After a and b (500 tokens), c (600) overflows 1000; d (10) would fit but is not taken.
    assert.equal(takenWithinBudget(ranked, 1000), 2);
    assert.equal(recallAtBudget(['d'], ranked, 1000), 0);
  });

  it('takes nothing when the first memory alone exceeds the budget', () => {
    assert.equal(takenWithinBudget(ranked, 299), 0);
    assert.equal(recallAtBudget(['a'], ranked, 299), 0);
    assert.equal(takenWithinBudget([], 500), 0);
  });

  it('zero-token memories always fit', () => {
    assert.equal(takenWithinBudget([m(['x'], 0), m(['y'], 0)], 0), 2);
  });

  it('R@B is recall over the memories taken', () => {
    assert.equal(recallAtBudget(['a', 'b', 'c'], ranked, 500), 2 / 3);
    assert.equal(recallAtBudget(['a', 'c'], ranked, 1100), 1);
  });
});

describe('evidenceFigures: means overall and per category', () => {
  const questions = [
    // category 1: one hit at rank 1, one at rank 3
    { category: '1', gold: ['a'], ranked: [m(['a'], 100), m(['x'], 100)] },
    { category: '1', gold: ['b', 'c'], ranked: [m(['x'], 100), m(['y'], 100), m(['b'], 100)] },
    // category 2: never found
    { category: '2', gold: ['z'], ranked: [m(['x'], 100)] },
    // category 10 sorts after 2 (numeric order)
    { category: '10', gold: ['a'], ranked: [m(['a'], 1000)] },
    // no gold: counted apart
    { category: '1', gold: [], ranked: [m(['a'], 100)] },
  ];
  const figures = evidenceFigures(questions, { ks: [1, 3], budgets: [250, 1000] });

  it('per category', () => {
    assert.deepEqual(Object.keys(figures.byCategory), ['1', '2', '10']);
    const one = figures.byCategory['1']!;
    assert.equal(one.questions, 2);
    assert.deepEqual(one.recallAtK, { '1': 0.5, '3': 0.75 });
    assert.deepEqual(one.allAtK, { '1': 0.5, '3': 0.5 });
    assert.deepEqual(one.recallAtBudget, { '250': 0.5, '1000': 0.75 });
    assert.deepEqual(one.memoriesAtBudget, { '250': 2, '1000': 2.5 });
    assert.deepEqual(figures.byCategory['2']!.recallAtK, { '1': 0, '3': 0 });
    assert.deepEqual(figures.byCategory['10']!.recallAtBudget, { '250': 0, '1000': 1 });
  });

  it('overall is the mean over questions (not over categories), rounded to 4 places', () => {
    assert.equal(figures.overall.questions, 4);
    assert.deepEqual(figures.overall.recallAtK, { '1': 0.5, '3': 0.625 });
    assert.deepEqual(figures.overall.allAtK, { '1': 0.5, '3': 0.5 });
    assert.deepEqual(figures.overall.recallAtBudget, { '250': 0.25, '1000': 0.625 });
    assert.equal(figures.withoutGold, 1);
  });

  it('an empty set gives zeros, not NaN', () => {
    const empty = evidenceFigures([], { ks: [5], budgets: [500] });
    assert.deepEqual(empty.overall, {
      questions: 0,
      recallAtK: { '5': 0 },
      allAtK: { '5': 0 },
      recallAtBudget: { '500': 0 },
      memoriesAtBudget: { '500': 0 },
    });
    assert.deepEqual(empty.byCategory, {});
  });

  it('uses k = 5, 10, 20, 50 and B = 500, 1000, 2000 by default', () => {
    const defaults = evidenceFigures([{ category: '4', gold: ['a'], ranked: [m(['a'])] }]);
    assert.deepEqual(Object.keys(defaults.overall.recallAtK), ['5', '10', '20', '50']);
    assert.deepEqual(Object.keys(defaults.overall.recallAtBudget), ['500', '1000', '2000']);
  });
});

describe('promptText', () => {
  it('prefixes time (minutes, as recorded) and speaker', () => {
    assert.equal(
      promptText({
        text: 'I went to a LGBTQ support group yesterday.',
        kind: 'fact',
        speaker: 'Caroline',
        occurredAt: '2023-05-08T13:56:02Z',
      }),
      '[2023-05-08 13:56] Caroline: I went to a LGBTQ support group yesterday.',
    );
    assert.equal(
      promptText({ text: 'hi', kind: 'fact', speaker: 'Ana', occurredAt: '2024-01-02T03:04:00+02:00' }),
      '[2024-01-02 03:04] Ana: hi',
    );
  });

  it('summaries name their speakers line by line, so they get the time only', () => {
    assert.equal(
      promptText({
        text: 'Caroline: hi\nMelanie: hello',
        kind: 'summary',
        speaker: 'Caroline, Melanie',
        occurredAt: '2023-05-08T13:56:00Z',
      }),
      '[2023-05-08 13:56] Caroline: hi\nMelanie: hello',
    );
  });
});

describe('recallChartSvg', () => {
  it('draws one line per series with escaped labels', () => {
    const svg = recallChartSvg({
      title: 'R@k <test>',
      ks: [5, 10, 20, 50],
      series: [
        { label: 'overall', values: [0.5, 0.6, 0.7, 0.8], emphasis: true },
        { label: 'a & b', values: [0.1, 0.2, 0.3, 1.2] },
      ],
    });
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.equal(svg.match(/<polyline /g)?.length, 2);
    assert.equal(svg.match(/<circle /g)?.length, 8);
    assert.ok(svg.includes('R@k &lt;test&gt;'));
    assert.ok(svg.includes('a &amp; b'));
    assert.ok(svg.trimEnd().endsWith('</svg>'));
  });
});
