import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  isScoredLongMemEvalQuestion,
  longMemEvalQuestion,
  readLongMemEvalQuestions,
  type LongMemEvalQuestion,
} from '../../services/bench/longmemeval-dataset.js';
import { longMemEvalCases } from '../../services/bench/longmemeval-bench.js';
import { InvalidInputError } from '../../services/core/errors.js';
import { sharedData } from '../support/cli.js';

const oraclePath = join(sharedData, 'longmemeval-oracle-dev.json');

async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe('LongMemEval questions (shared oracle file)', () => {
  let questions: LongMemEvalQuestion[] = [];

  it('reads all 206 questions with ids, types, answers and user-side gold', async () => {
    questions = await all(readLongMemEvalQuestions(oraclePath));
    assert.equal(questions.length, 206);
    const first = questions[0];
    assert.equal(first?.questionId, '001be529');
    assert.equal(first?.questionType, 'single-session-user');
    assert.equal(first?.answer, 'over a year');
    assert.equal(first?.questionDate, '2023/05/28 (Sun) 19:47');
    assert.deepEqual(first?.gold, ['answer_530960c1:4']);
    assert.equal(first?.turns, 12);
    assert.equal(first?.abstention, false);
  });

  it('numeric answers become strings; _abs ids are abstentions', () => {
    assert.equal(questions[63]?.answer, '2');
    assert.equal(questions[1]?.questionId, '0862e8bf_abs');
    assert.equal(questions[1]?.abstention, true);
    assert.equal(isScoredLongMemEvalQuestion(questions[1]), false);
  });

  it('gold on the assistant side is kept apart and not scored', () => {
    const q = questions[25];
    assert.equal(q?.questionType, 'single-session-assistant');
    assert.deepEqual(q?.gold, []);
    assert.deepEqual(q?.assistantGold, ['answer_ultrachat_113156:3']);
    assert.equal(isScoredLongMemEvalQuestion(q), false);
  });

  it('scores the 173 non-abstention questions with user-side gold', () => {
    assert.equal(questions.filter(isScoredLongMemEvalQuestion).length, 173);
    const types = new Set(questions.map((q) => q.questionType));
    assert.deepEqual([...types].sort(), [
      'knowledge-update',
      'multi-session',
      'single-session-assistant',
      'single-session-preference',
      'single-session-user',
      'temporal-reasoning',
    ]);
  });

  it('--limit reads only the first questions', async () => {
    const two = await all(readLongMemEvalQuestions(oraclePath, { limit: 2 }));
    assert.deepEqual(
      two.map((q) => q.questionId),
      ['001be529', '0862e8bf_abs'],
    );
  });

  it('names the bad field of a malformed question', () => {
    assert.throws(
      () => longMemEvalQuestion({ question_id: 'x', question_type: 't', question: 'q' }, 4, '{}'),
      (error: unknown) => error instanceof InvalidInputError && /\[4\]\.answer/.test(error.message),
    );
  });

  it('cases: one scope per question, gold labels never in the events, sources mapped back to dataset ids', async () => {
    const value = {
      question_id: 'q1',
      question_type: 'multi-session',
      question: 'What did I buy?',
      answer: 'a bike',
      question_date: '2023/05/30 (Tue) 10:00',
      haystack_dates: ['2023/05/20 (Sat) 02:21', '2023/05/21 (Sun) 02:21'],
      haystack_session_ids: ['s1', 's1'],
      haystack_sessions: [
        [
          { role: 'user', content: 'I bought a bike.', has_answer: true },
          { role: 'assistant', content: 'Nice!' },
        ],
        [{ role: 'user', content: 'I bought a bike.', has_answer: true }],
      ],
    };
    const question = longMemEvalQuestion(value, 0, JSON.stringify(value));
    assert.deepEqual(question.gold, ['s1:0']);
    async function* one(): AsyncGenerator<LongMemEvalQuestion> {
      yield question;
    }
    const [c] = await all(longMemEvalCases(one(), 'bench'));
    assert.deepEqual(c?.scope, { tenantId: 'bench', userId: 'q1' });
    const events = [...(c?.items() as Iterable<{ result: { ok: boolean; event?: unknown } }>)];
    assert.equal(events.length, 3);
    for (const e of events) {
      assert.equal(e.result.ok, true);
      assert.doesNotMatch(JSON.stringify(e.result.event), /has_answer|a bike"/);
    }
    const turnIds = events.map((e) => (e.result.event as { turnId: string }).turnId);
    assert.deepEqual(turnIds, ['s1:0', 's1:1', 's1#2:0']);
    assert.equal(c?.sourceId?.('s1#2:0'), 's1:0', 'the repeated session maps back to the dataset id');
    assert.deepEqual(c?.questions[0]?.answer, 'a bike');
    assert.equal(c?.questions[0]?.askedAt, '2023/05/30 (Tue) 10:00');
  });
});
