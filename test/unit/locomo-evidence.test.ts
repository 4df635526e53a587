import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { normalizeTurnId, parseEvidence } from '../../services/bench/locomo-evidence.js';
import { locomoSample, readLocomoSamples, type LocomoSample } from '../../services/bench/locomo-dataset.js';
import { locomoCases } from '../../services/bench/locomo-bench.js';
import { InvalidInputError } from '../../services/core/errors.js';
import { sharedData } from '../support/cli.js';

const locomoPath = join(sharedData, 'locomo-dev.json');

describe('parseEvidence', () => {
  const turns = ['D1:3', 'D1:18', 'D1:20', 'D4:17', 'D8:6', 'D9:17', 'D11:26', 'D30:5'];

  it('keeps well-formed ids', () => {
    assert.deepEqual(parseEvidence(['D1:3', 'D4:17'], turns), {
      ids: ['D1:3', 'D4:17'],
      unknown: [],
      unparseable: [],
    });
  });

  it('splits several ids in one string ("D8:6; D9:17", as in conv-26 #37)', () => {
    assert.deepEqual(parseEvidence(['D8:6; D9:17'], turns).ids, ['D8:6', 'D9:17']);
    assert.deepEqual(parseEvidence(['D8:6, D9:17'], turns).ids, ['D8:6', 'D9:17']);
    assert.deepEqual(parseEvidence(['D8:6 D9:17'], turns).ids, ['D8:6', 'D9:17']);
  });

  it('repairs a stray colon ("D:11:26", as in conv-43 #18)', () => {
    assert.deepEqual(parseEvidence(['D1:3', 'D:11:26'], turns).ids, ['D1:3', 'D11:26']);
  });

  it('drops a lone "D" as unparseable and keeps the rest (conv-42 #88)', () => {
    assert.deepEqual(parseEvidence(['D1:18', 'D', 'D1:20'], turns), {
      ids: ['D1:18', 'D1:20'],
      unknown: [],
      unparseable: ['D'],
    });
  });

  it('repairs spaces after D and around the colon, and a missing colon', () => {
    assert.deepEqual(parseEvidence(['D 4:17'], turns).ids, ['D4:17']);
    assert.deepEqual(parseEvidence(['D4 : 17'], turns).ids, ['D4:17']);
    assert.deepEqual(parseEvidence(['D4 17'], turns).ids, ['D4:17']);
    assert.deepEqual(parseEvidence(['d1:3'], turns).ids, ['D1:3']);
  });

  it('drops leading zeros and matches the sample’s own spelling', () => {
    assert.deepEqual(parseEvidence(['D30:05'], turns).ids, ['D30:5']);
    assert.deepEqual(parseEvidence(['D1:3'], ['D01:03']).ids, ['D01:03']);
  });

  it('drops and counts ids of turns the sample does not have ("D10:19" in conv-42 #58)', () => {
    assert.deepEqual(parseEvidence(['D1:3', 'D10:19'], turns), {
      ids: ['D1:3'],
      unknown: ['D10:19'],
      unparseable: [],
    });
  });

  it('deduplicates, and treats an empty list and non-strings safely', () => {
    assert.deepEqual(parseEvidence(['D1:3', 'D1:3; D1:3'], turns).ids, ['D1:3']);
    assert.deepEqual(parseEvidence([], turns), { ids: [], unknown: [], unparseable: [] });
    assert.deepEqual(parseEvidence([42, ''], turns), { ids: [], unknown: [], unparseable: ['42'] });
  });

  it('keeps every well-formed id when the sample’s turns are not given', () => {
    assert.deepEqual(parseEvidence(['D8:6; D9:17', 'D99:1']).ids, ['D8:6', 'D9:17', 'D99:1']);
  });

  it('normalizeTurnId accepts exactly one id', () => {
    assert.equal(normalizeTurnId('D:11:26'), 'D11:26');
    assert.equal(normalizeTurnId('D8:6; D9:17'), undefined);
    assert.equal(normalizeTurnId('D'), undefined);
  });
});

describe('locomoSample', () => {
  it('names the field of a malformed sample', () => {
    assert.throws(
      () => locomoSample({ sample_id: 'x', conversation: {}, qa: [{ question: 'q?' }] }, 3, '{}'),
      (error: unknown) => error instanceof InvalidInputError && /\[3\]\.qa\.0\.category/.test(error.message),
    );
  });

  it('reads turn ids from session_N keys only, sessions in numeric order', () => {
    const sample = locomoSample(
      {
        sample_id: 's',
        conversation: {
          speaker_a: 'A',
          session_10: [{ speaker: 'A', dia_id: 'D10:1', text: 'x' }],
          session_2: [{ speaker: 'A', dia_id: 'D2:1', text: 'y' }],
          session_2_date_time: '1:56 pm on 8 May, 2023',
        },
        qa: [{ question: 'q?', category: 4, evidence: ['D2:1', 'D3:1'] }],
      },
      0,
      '{}',
    );
    assert.deepEqual(sample.turnIds, ['D2:1', 'D10:1']);
    assert.deepEqual(sample.questions[0], {
      questionId: 's#0',
      sampleId: 's',
      question: 'q?',
      category: 4,
      answer: undefined,
      gold: ['D2:1'],
      unknownEvidence: ['D3:1'],
      unparseableEvidence: [],
    });
  });
});

describe('LoCoMo dev file', () => {
  let samples: LocomoSample[] = [];
  const question = (id: string) => {
    const found = samples.flatMap((s) => s.questions).find((q) => q.questionId === id);
    assert.ok(found, id);
    return found;
  };

  it('has 6 samples, 1,157 questions in categories 1–5, 883 of categories 1–4 with gold', async () => {
    samples = await readLocomoSamples(locomoPath);
    assert.deepEqual(
      samples.map((s) => [s.sampleId, s.turnIds.length, s.questions.length]),
      [
        ['conv-26', 419, 199],
        ['conv-30', 369, 105],
        ['conv-41', 663, 193],
        ['conv-42', 629, 260],
        ['conv-43', 680, 242],
        ['conv-44', 675, 158],
      ],
    );
    const questions = samples.flatMap((s) => s.questions);
    const byCategory: Record<number, number> = {};
    for (const q of questions) byCategory[q.category] = (byCategory[q.category] ?? 0) + 1;
    assert.deepEqual(byCategory, { 1: 172, 2: 180, 3: 53, 4: 480, 5: 272 });
    const scoredCategories = questions.filter((q) => q.category <= 4);
    assert.equal(scoredCategories.length, 885);
    assert.equal(scoredCategories.filter((q) => q.gold.length > 0).length, 883);
    assert.deepEqual(
      scoredCategories.filter((q) => q.gold.length === 0).map((q) => q.questionId),
      ['conv-26#30', 'conv-26#46'],
    );
  });

  it('question ids are <sample_id>#<index in qa>, gold ids are turns of the sample', () => {
    for (const sample of samples) {
      const turns = new Set(sample.turnIds);
      sample.questions.forEach((q, i) => {
        assert.equal(q.questionId, `${sample.sampleId}#${i}`);
        for (const id of q.gold) assert.ok(turns.has(id), `${q.questionId}: ${id}`);
      });
    }
    assert.equal(question('conv-26#0').question, 'When did Caroline go to the LGBTQ support group?');
    assert.deepEqual(question('conv-26#0').gold, ['D1:3']);
  });

  it('recovers the malformed evidence of the file and counts what it drops', () => {
    assert.deepEqual(question('conv-26#37').gold, ['D8:6', 'D9:17']);
    assert.deepEqual(question('conv-42#88').gold, ['D1:18', 'D1:20']);
    assert.deepEqual(question('conv-42#88').unparseableEvidence, ['D']);
    assert.ok(question('conv-43#18').gold.includes('D11:26'));
    assert.deepEqual(question('conv-42#58').unknownEvidence, ['D10:19']);
    const dropped = samples
      .flatMap((s) => s.questions)
      .flatMap((q) => [...q.unknownEvidence, ...q.unparseableEvidence]);
    assert.deepEqual(dropped, ['D10:19', 'D']);
  });

  it('--limit reads only the first samples', async () => {
    const first = await readLocomoSamples(locomoPath, { limit: 1 });
    assert.deepEqual(
      first.map((s) => s.sampleId),
      ['conv-26'],
    );
  });

  it('each sample is one case whose events all land in the sample’s own user', async () => {
    const cases = locomoCases(samples, 'bench');
    assert.deepEqual(
      cases.map((c) => [c.caseId, c.scope.userId, c.questions.length]),
      samples.map((s) => [s.sampleId, s.sampleId, s.questions.length]),
    );
    const [first] = cases;
    assert.ok(first);
    let turns = 0;
    for await (const item of first.items()) {
      assert.ok(item.result.ok);
      assert.equal(item.result.event.userId, 'conv-26');
      turns++;
    }
    assert.equal(turns, 419);
    assert.equal(first.questions.filter((q) => q.scored).length, 152);
  });
});
