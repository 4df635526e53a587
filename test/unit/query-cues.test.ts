import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyCues,
  localMonth,
  mentionedSpeaker,
  monthCues,
  type CueWeights,
} from '../../services/app/query-cues.js';
import { fuse } from '../../services/adapters/memory/memory-fusion.js';

const at = (iso: string): number => Date.parse(iso);

describe('query cues', () => {
  it('reads the months a question names, in any of the usual spellings', () => {
    assert.deepEqual(monthCues('Which city did John recommend to Tim in January 2024?'), [
      { year: 2024, month: 1 },
    ]);
    assert.deepEqual(monthCues('What happened on 8 May, 2023 and in Sept. 2023?'), [
      { year: 2023, month: 5 },
      { year: 2023, month: 9 },
    ]);
    assert.deepEqual(monthCues('on March 3rd, 2022 and March 2022'), [{ year: 2022, month: 3 }]);
    assert.deepEqual(monthCues('When did Melanie paint a sunrise?'), []);
    assert.deepEqual(monthCues('we may 2023 be late'), [], '"may" the verb');
    assert.deepEqual(monthCues('in May 2023'), [{ year: 2023, month: 5 }]);
    assert.deepEqual(monthCues('the 2023 Banana 2024 report'), []);
  });

  it('finds the one speaker a question names, as a whole word', () => {
    const speakers = ['Caroline', 'Melanie'];
    assert.equal(mentionedSpeaker('What did Caroline research?', speakers), 'Caroline');
    assert.equal(mentionedSpeaker("What is caroline's job?", speakers), 'Caroline');
    assert.equal(mentionedSpeaker('Did Caroline and Melanie meet?', speakers), null, 'both named: no cue');
    assert.equal(mentionedSpeaker('What did Carolinea say?', speakers), null);
    assert.equal(mentionedSpeaker('What did you say?', speakers), null);
  });

  it('takes the month in the memory’s own zone', () => {
    assert.deepEqual(localMonth({ occurredAt: at('2024-01-31T23:30:00Z'), zoneOffset: '+02:00' }), {
      year: 2024,
      month: 2,
    });
    assert.deepEqual(localMonth({ occurredAt: at('2024-02-01T00:30:00Z'), zoneOffset: '-05:00' }), {
      year: 2024,
      month: 1,
    });
  });

  const hits = [
    { id: 'a', score: 0.9, speaker: 'Melanie', occurredAt: at('2023-12-02T10:00:00Z'), zoneOffset: '+00:00' },
    { id: 'b', score: 0.8, speaker: 'John', occurredAt: at('2024-01-15T10:00:00Z'), zoneOffset: '+00:00' },
    { id: 'c', score: 0.7, speaker: 'Tim', occurredAt: at('2024-01-20T10:00:00Z'), zoneOffset: '+00:00' },
  ];
  const weights: CueWeights = { speakerBoost: 0.1, timeBoost: 0.3 };
  const run = (query: string, w = weights) =>
    applyCues(query, hits, (h) => ({ score: h.score, entry: h }), w);

  it('lifts the memories that match, keeps scores in [0, 1], and says which cue matched', () => {
    const ranked = run('Which city did John recommend in January 2024?');
    assert.deepEqual(
      ranked.map((r) => r.item.id),
      ['b', 'c', 'a'],
    );
    assert.deepEqual(ranked[0]?.cues, ['speaker:John', 'month:2024-01']);
    assert.ok(Math.abs((ranked[0]?.score ?? 0) - (0.8 + 0.4) / 1.4) < 1e-12);
    assert.deepEqual(ranked[1]?.cues, ['month:2024-01']);
    for (const r of ranked) assert.ok(r.score >= 0 && r.score <= 1);
  });

  it('leaves a question without cues, and cues switched off, exactly as fused', () => {
    for (const ranked of [
      run('What does Melanie like?', { speakerBoost: 0, timeBoost: 0 }),
      run('What is the weather like?'),
    ]) {
      assert.deepEqual(
        ranked.map((r) => [r.item.id, r.score]),
        [
          ['a', 0.9],
          ['b', 0.8],
          ['c', 0.7],
        ],
      );
    }
  });
});

describe('fusion scaling', () => {
  const candidate = (key: number) => ({ key, item: key, occurredAt: 0, id: String(key) });
  it('minmax: cosine spread over the kNN candidates, BM25 by the best match', () => {
    const lexical = [
      { ...candidate(1), bm25: -4 },
      { ...candidate(2), bm25: -1 },
    ];
    const semantic = [
      { ...candidate(2), distance: 0.2 }, // cosine 0.8: the best → 1
      { ...candidate(3), distance: 0.4 }, // 0.6 → 0.5
      { ...candidate(4), distance: 0.6 }, // 0.4: the worst → 0, still a hit
    ];
    const fused = fuse(lexical, semantic, { lexicalWeight: 0.5, semanticWeight: 0.5 }, true, 10);
    const byItem = new Map(fused.map((f) => [f.item, f]));
    assert.equal(byItem.get(1)?.lexical, 1);
    assert.equal(byItem.get(2)?.lexical, 0.25);
    assert.equal(byItem.get(2)?.semantic, 1);
    assert.ok(Math.abs((byItem.get(3)?.semantic ?? 0) - 0.5) < 1e-12);
    assert.equal(byItem.get(4)?.semantic, 0);
    assert.equal(byItem.get(4)?.score, 0);
    assert.equal(fused.length, 4);
    assert.deepEqual(
      fused.map((f) => f.item),
      [2, 1, 3, 4],
    );
  });

  it('minmax: scaled over the best 100 cosines, so asking for more candidates changes no part', () => {
    const many = Array.from({ length: 400 }, (_, i) => ({ ...candidate(i), distance: i / 400 }));
    const parts = (k: number) =>
      new Map(
        fuse([], many.slice(0, k), { lexicalWeight: 0.3, semanticWeight: 0.7 }, true, 10).map((f) => [
          f.item,
          f.semantic,
        ]),
      );
    assert.deepEqual(parts(120), parts(400));
    assert.equal(parts(400).get(0), 1);
  });

  it('minmax: nearly equal cosines (one candidate, a narrow filter) stay as they are', () => {
    const one = fuse(
      [],
      [{ ...candidate(1), distance: 0.6 }],
      { lexicalWeight: 0.3, semanticWeight: 0.7 },
      true,
      5,
    );
    assert.ok(Math.abs((one[0]?.semantic ?? 0) - 0.4) < 1e-12);
    const close = fuse(
      [],
      [
        { ...candidate(1), distance: 0.3 },
        { ...candidate(2), distance: 0.31 },
      ],
      { lexicalWeight: 0.3, semanticWeight: 0.7 },
      true,
      5,
    );
    assert.ok(Math.abs((close[1]?.semantic ?? 0) - 0.69) < 1e-12);
  });

  it('best: cosine as it is (the first version)', () => {
    const fused = fuse(
      [],
      [{ ...candidate(1), distance: 0.3 }],
      { lexicalWeight: 0.5, semanticWeight: 0.5, normalization: 'best' },
      true,
      5,
    );
    assert.ok(Math.abs((fused[0]?.semantic ?? 0) - 0.7) < 1e-12);
  });
});
