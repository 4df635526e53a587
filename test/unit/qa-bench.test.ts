import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { OpenAiChat } from '../../services/adapters/openai/openai-chat.js';
import { InvalidInputError, LightmemError } from '../../services/core/errors.js';
import { approxTokenCount } from '../../services/core/text/token-count.js';
import { runQa } from '../../services/bench/qa-bench.js';
import {
  judgeMessages,
  locomoAnswerMessages,
  locomoJudgeMessages,
  longMemEvalAnswerMessages,
  longMemEvalJudgeMessages,
  parseLocomoLabel,
  parseYesNo,
} from '../../services/bench/qa-prompts.js';
import type { RecallQuestion, Retrieval, RetrievedMemory } from '../../services/bench/recall-bench.js';
import {
  errorBody,
  startFakeOpenAiServer,
  type FakeChatRequest,
  type FakeOpenAiServer,
  type FakeResponder,
} from '../support/fake-openai-server.js';

const memory = (text: string, i = 0): RetrievedMemory => ({
  id: `m${i}`,
  score: 1 - i / 100,
  text,
  sources: [`D1:${i}`],
  tokens: approxTokenCount(text),
});
const memories = (n: number): RetrievedMemory[] =>
  Array.from({ length: n }, (_, i) =>
    memory(`[2023-05-08 13:${String(i).padStart(2, '0')}] Caroline: fact ${i + 1}.`, i),
  );

const question = (fields: Partial<RecallQuestion> & Pick<RecallQuestion, 'questionId'>): RecallQuestion => ({
  category: 1,
  query: 'When did Caroline go to the support group?',
  gold: ['D1:3'],
  scored: true,
  answer: '7 May 2023',
  ...fields,
});
const retrieval = (q: RecallQuestion, retrieved: RetrievedMemory[] = memories(3)): Retrieval => ({
  caseId: 'conv-26',
  question: q,
  retrieved,
});

const content = (messages: readonly { content: string }[]) => messages.map((m) => m.content).join('\n');

describe('answer prompts', () => {
  it('LongMemEval: helpful assistant, question time and question, then the top 20 memories one per line', () => {
    const q = question({ questionId: 'q1', category: 'multi-session', askedAt: '2023/05/30 (Tue) 23:40' });
    const messages = longMemEvalAnswerMessages(q, memories(25));
    assert.deepEqual(messages[0], { role: 'system', content: 'You are a helpful assistant.' });
    assert.equal(messages[1]?.role, 'user');
    assert.equal(messages.length, 2);
    const lines = memories(20).map((m) => m.text);
    assert.equal(
      messages[1]?.content,
      'Question time: 2023/05/30 (Tue) 23:40 and question: When did Caroline go to the support group?\n' +
        `Please answer the question based on the following memories: ${lines.join('\n')}`,
    );
    assert.ok(!content(messages).includes('fact 21.'), 'the 21st memory is cut');
    const top5 = content(longMemEvalAnswerMessages(q, memories(25), 5));
    assert.ok(top5.includes('fact 5.') && !top5.includes('fact 6.'));
  });

  it('LongMemEval: a question without its question time is refused', () => {
    assert.throws(
      () => longMemEvalAnswerMessages(question({ questionId: 'q1', category: 'multi-session' }), memories(1)),
      (error: unknown) => error instanceof InvalidInputError && error.field === 'askedAt',
    );
  });

  it('LoCoMo: one system message with the instructions, the top 60 memories and the question', () => {
    const messages = locomoAnswerMessages(question({ questionId: 'q1' }), memories(70));
    assert.equal(messages.length, 1);
    assert.equal(messages[0]?.role, 'system');
    const text = content(messages);
    assert.ok(text.includes('[2023-05-08 13:00] Caroline: fact 1.\n[2023-05-08 13:01] Caroline: fact 2.'));
    assert.ok(text.includes('fact 60.') && !text.includes('fact 61.'), 'cut at 60');
    assert.ok(text.trimEnd().endsWith('Question: When did Caroline go to the support group?\n\nAnswer:'));
    for (const rule of [
      /both speakers/,
      /timestamp/,
      /most recent/,
      /relative time/,
      /4 May 2022/,
      /5-6 words/,
    ]) {
      assert.match(text, rule);
    }
    assert.match(text, /do not confuse them with the speakers/);
    assert.match(text, /think step by step/);
    const top2 = content(locomoAnswerMessages(question({ questionId: 'q1' }), memories(70), 2));
    assert.ok(top2.includes('fact 2.') && !top2.includes('fact 3.'));
  });

  it('refuses a top-K that is not a positive integer', () => {
    assert.throws(() => locomoAnswerMessages(question({ questionId: 'q1' }), memories(3), 0), RangeError);
  });
});

describe('judge prompts', () => {
  it('LoCoMo: the generous CORRECT/WRONG judge over question, gold and generated answer, JSON label', () => {
    const [message, ...rest] = locomoJudgeMessages(question({ questionId: 'q1' }), 'On 7 May.');
    assert.equal(rest.length, 0);
    assert.equal(message?.role, 'user');
    const text = message?.content ?? '';
    assert.ok(text.includes('Question: When did Caroline go to the support group?'));
    assert.ok(text.includes('Gold answer: 7 May 2023'));
    assert.ok(text.includes('Generated answer: On 7 May.'));
    assert.match(text, /same topic as the gold answer, count it as CORRECT/);
    assert.match(text, /same date or time period/);
    assert.match(text, /"label"/);
    assert.match(text, /JSON/);
  });

  const lme = (category: string, questionId = 'q1') =>
    longMemEvalJudgeMessages(question({ questionId, category, answer: 'Eighteen days' }), 'hyp');

  it('LongMemEval: the standard prompt for single-session and multi-session questions', () => {
    const standard = content(lme('single-session-user'));
    assert.equal(content(lme('single-session-assistant')), standard);
    assert.equal(content(lme('multi-session')), standard);
    assert.match(standard, /Correct Answer: Eighteen days\n\nModel Response: hyp\n\n/);
    assert.match(standard, /intermediate steps/);
    assert.match(standard, /only part of the information/);
    assert.ok(standard.endsWith('Is the model response correct? Answer yes or no only.'));
    assert.equal(lme('multi-session')[0]?.role, 'user');
  });

  it('LongMemEval: the per-type rules', () => {
    const temporal = content(lme('temporal-reasoning'));
    assert.match(temporal, /off-by-one/);
    assert.match(temporal, /19 days when the answer is 18/);
    assert.match(content(lme('knowledge-update')), /earlier information together with an updated answer/);
    const preference = content(lme('single-session-preference'));
    assert.match(preference, /Rubric: Eighteen days/);
    assert.match(preference, /recalls and uses the user's personal information correctly/);
    assert.ok(!/off-by-one/.test(content(lme('multi-session'))));
  });

  it('LongMemEval: `_abs` questions (or flagged ones) get the abstention prompt whatever their type', () => {
    const abs = content(lme('temporal-reasoning', 'gpt4_2655b836_abs'));
    assert.match(abs, /unanswerable question/);
    assert.match(abs, /Explanation: Eighteen days/);
    assert.ok(
      abs.endsWith('Does the model correctly identify the question as unanswerable? Answer yes or no only.'),
    );
    const flagged = longMemEvalJudgeMessages(
      question({ questionId: 'q9', category: 'multi-session', abstention: true }),
      'I do not know.',
    );
    assert.match(content(flagged), /unanswerable/);
  });

  it('LongMemEval: an unknown question type is refused; a question without a reference too', () => {
    assert.throws(() => lme('made-up-type'), InvalidInputError);
    assert.throws(
      () => judgeMessages('locomo', question({ questionId: 'q1', answer: undefined }), 'x'),
      InvalidInputError,
    );
  });
});

describe('judge verdicts', () => {
  it('LoCoMo: the JSON label, bare, fenced or among other text', () => {
    assert.equal(parseLocomoLabel('{"label": "CORRECT"}'), true);
    assert.equal(parseLocomoLabel('{"label":"WRONG"}'), false);
    assert.equal(parseLocomoLabel('```json\n{"label": "WRONG"}\n```'), false);
    assert.equal(parseLocomoLabel('```\n{ "label" : "CORRECT" }\n```'), true);
    assert.equal(parseLocomoLabel('Same date, other format.\n{"label": "CORRECT"}'), true);
    assert.equal(parseLocomoLabel('{"reasoning": "it is not WRONG at all", "label": "CORRECT"}'), true);
    assert.equal(parseLocomoLabel('{"label": "correct"}'), true, 'any case inside the JSON');
    assert.equal(parseLocomoLabel('<think>CORRECT? maybe WRONG</think>{"label": "CORRECT"}'), true);
  });

  it('LoCoMo: without JSON, the last whole-word CORRECT or WRONG', () => {
    assert.equal(parseLocomoLabel('The answer names the same necklace. CORRECT'), true);
    assert.equal(parseLocomoLabel('Different year.\nWRONG'), false);
    assert.equal(parseLocomoLabel('{"label": "CORRECT"'), true, 'broken JSON still holds the word');
    assert.equal(parseLocomoLabel('At first CORRECT-looking, but the year differs: WRONG'), false);
  });

  it('LoCoMo: neither a label nor the word is a non-retryable error', () => {
    for (const text of [
      '',
      'I cannot tell.',
      'INCORRECT',
      '{"label": "MAYBE"}',
      'correct-ish but lowercase',
    ]) {
      assert.throws(
        () => parseLocomoLabel(text),
        (error: unknown) => error instanceof LightmemError && !error.retryable,
        text,
      );
    }
  });

  it('LongMemEval: yes or no as the first word of the first line, any case', () => {
    for (const text of ['yes', 'Yes.', 'YES', '**Yes**', '  \n yes, it does', 'Yes\nbut there is no date']) {
      assert.equal(parseYesNo(text), true, text);
    }
    for (const text of ['no', 'No.', 'NO', 'no, the count is off by three', '\nNo\nyes would be wrong']) {
      assert.equal(parseYesNo(text), false, text);
    }
    assert.equal(parseYesNo('Answer: yes'), true, 'a lone yes in the first line');
    assert.equal(parseYesNo('<think>no idea</think>\nyes'), true);
  });

  it('LongMemEval: neither (or both) is a non-retryable error', () => {
    for (const text of ['', 'yesterday', 'maybe', 'Not sure: yes or no?', 'Nope']) {
      assert.throws(
        () => parseYesNo(text),
        (error: unknown) => error instanceof LightmemError && !error.retryable,
        text,
      );
    }
  });
});

/** The question a prompt asks (LoCoMo: after `Question: `; LongMemEval: after `and question: `). */
function askedQuestion(request: FakeChatRequest): string {
  const text = request.messages.map((m) => m.content).join('\n');
  return /(?:^|\n)Question: (.*)\n/.exec(text)?.[1] ?? /and question: (.*)\n/.exec(text)?.[1] ?? '';
}

/** Judges by whether the generated answer holds the gold one. */
function judgeVerdict(request: FakeChatRequest, verdict: (fits: boolean) => string): string {
  const text = request.messages[0]?.content ?? '';
  // The last match: the LoCoMo prompt has an example gold answer before the real one.
  const gold = [...text.matchAll(/(?:Gold answer|Correct Answer|Explanation): (.*)\n/g)].at(-1)?.[1] ?? '?';
  const generated = [...text.matchAll(/(?:Generated answer|Model Response): (.*)\n/g)].at(-1)?.[1] ?? '';
  return verdict(generated.toLowerCase().includes(gold.toLowerCase()));
}

describe('runQa against an OpenAI-compatible server', () => {
  let server: FakeOpenAiServer;
  before(async () => {
    server = await startFakeOpenAiServer();
  });
  after(async () => {
    await server.close();
  });
  const models = (maxRetries = 0) => ({
    answerer: new OpenAiChat({ baseUrl: server.baseUrl, apiKey: 'k', model: 'answer-model', maxRetries }),
    judge: new OpenAiChat({ baseUrl: server.baseUrl, apiKey: 'k', model: 'judge-model', maxRetries }),
  });

  /** Answers are scripted by question; the judge says whether the answer holds the gold. */
  const scripted =
    (
      answers: Record<string, string | { status: number }>,
      verdict: (fits: boolean) => string,
    ): FakeResponder =>
    (request) => {
      if (request.model === 'judge-model') {
        if (/Generated answer: garbled/.test(request.messages[0]?.content ?? '')) return 'no idea';
        return judgeVerdict(request, verdict);
      }
      const reply = answers[askedQuestion(request)] ?? 'I do not know';
      return typeof reply === 'string'
        ? reply
        : { status: reply.status, body: errorBody('scripted', reply.status) };
    };

  const locomo: Retrieval[] = [
    retrieval(question({ questionId: 's#0', category: 1, query: 'Q-a?', answer: 'Paris' })),
    retrieval(question({ questionId: 's#1', category: 1, query: 'Q-b?', answer: 'Rome' })),
    retrieval(question({ questionId: 's#2', category: 2, query: 'Q-c?', answer: '7 May 2023' })),
    retrieval(question({ questionId: 's#3', category: 2, query: 'Q-d?', answer: '2022' })),
    retrieval(question({ questionId: 's#4', category: 4, query: 'Q-e?', answer: 'a corgi' })),
    retrieval(question({ questionId: 's#5', category: 4, query: 'Q-f?', answer: 'blue' })),
    retrieval(question({ questionId: 's#6', category: 5, query: 'Q-g?', answer: undefined, scored: false })),
    retrieval(question({ questionId: 's#7', category: 3, query: 'Q-h?', answer: 'hiking', scored: false })),
  ];
  const locomoAnswers = {
    'Q-a?': 'She went to Paris.',
    'Q-b?': 'Milan',
    'Q-c?': 'On 7 May 2023',
    'Q-d?': { status: 400 },
    'Q-e?': 'A corgi named Waffles',
    'Q-f?': 'garbled',
  };

  it('LoCoMo: answers and judges the answerable questions, accuracy per category, errors counted wrong', async () => {
    server.respondWith(
      scripted(locomoAnswers, (fits) =>
        fits ? 'Same topic.\n```json\n{"label": "CORRECT"}\n```' : '{"label": "WRONG"}',
      ),
    );
    const before = server.chatRequests().length;
    const progress: [number, number][] = [];
    const run = await runQa(locomo, {
      benchmark: 'locomo',
      ...models(),
      concurrency: 2,
      onProgress: (done, total) => progress.push([done, total]),
    });
    const sent = server.chatRequests().slice(before);

    assert.deepEqual(
      run.perQuestion.map((r) => [r.questionId, r.category, r.answer, r.reference, r.correct]),
      [
        ['s#0', 1, 'She went to Paris.', 'Paris', true],
        ['s#1', 1, 'Milan', 'Rome', false],
        ['s#2', 2, 'On 7 May 2023', '7 May 2023', true],
        ['s#3', 2, '', '2022', null],
        ['s#4', 4, 'A corgi named Waffles', 'a corgi', true],
        ['s#5', 4, 'garbled', 'blue', null],
      ],
      'LoCoMo: category 5 (no answer) and unscored questions are not asked',
    );
    assert.match(run.perQuestion[3]?.error ?? '', /^answer: .*HTTP 400/);
    assert.match(run.perQuestion[5]?.error ?? '', /^judge: .*no verdict/);
    assert.equal(run.perQuestion[0]?.error, undefined);
    assert.deepEqual(run.accuracy.overall, { correct: 3, total: 6, accuracy: 0.5 });
    assert.deepEqual(run.accuracy.byCategory, {
      '1': { correct: 1, total: 2, accuracy: 0.5 },
      '2': { correct: 1, total: 2, accuracy: 0.5 },
      '4': { correct: 1, total: 2, accuracy: 0.5 },
    });
    assert.equal(run.errors, 2);
    assert.equal(run.calls, 11, 'six answers, five judgements (the failed answer is not judged)');
    assert.equal(run.plannedCalls, 12);
    assert.equal(sent.length, 11);
    assert.equal(run.answerModel, 'answer-model');
    assert.equal(run.judgeModel, 'judge-model');
    assert.equal(run.topK, 60);
    assert.equal(run.dryRun, false);
    assert.ok(run.seconds > 0);

    const answerCalls = sent.filter((r) => r.model === 'answer-model');
    const judgeCalls = sent.filter((r) => r.model === 'judge-model');
    assert.equal(answerCalls.length, 6);
    for (const r of answerCalls) {
      assert.equal(r.temperature, 0);
      assert.equal(r.top_p, undefined);
      assert.equal(r.messages[0]?.role, 'system');
    }
    for (const r of judgeCalls) {
      assert.equal(r.temperature, 0);
      assert.deepEqual(r.response_format, { type: 'json_object' });
    }

    const perQuestionPrompt = run.perQuestion.reduce((sum, r) => sum + r.promptTokens, 0);
    assert.equal(run.promptTokens, perQuestionPrompt);
    assert.ok(run.perQuestion[0]!.promptTokens > 0 && run.perQuestion[0]!.completionTokens > 0);
    assert.equal(run.perQuestion[3]?.promptTokens, 0, 'nothing answered, nothing counted');
    const answered = sent.filter((r) => !(r.model === 'answer-model' && askedQuestion(r) === 'Q-d?'));
    const expectedPrompt = answered.reduce(
      (sum, r) => sum + r.messages.reduce((s, m) => s + approxTokenCount(m.content), 0),
      0,
    );
    assert.equal(
      run.promptTokens,
      expectedPrompt,
      "the endpoint's usage of the calls that succeeded, summed",
    );

    assert.equal(progress.length, 6);
    assert.deepEqual(progress.at(-1), [6, 6]);
  });

  it('LongMemEval: every question graded (unscored abstention too), top_p 0.8, max_tokens 2000, yes/no judge', async () => {
    const before = server.chatRequests().length;
    server.respondWith(
      scripted(
        { 'Q-1?': 'You bought it 18 days ago.', 'Q-2?': 'Nothing says so.', 'Q-3?': 'Sushi' },
        (fits) => (fits ? 'Yes.' : 'No.'),
      ),
    );
    const lme: Retrieval[] = [
      retrieval(
        question({
          questionId: 'a1',
          category: 'temporal-reasoning',
          query: 'Q-1?',
          answer: '18 days',
          askedAt: '2023/05/30 (Tue) 23:40',
        }),
        memories(30),
      ),
      retrieval(
        question({
          questionId: 'a2_abs',
          category: 'multi-session',
          // As the LongMemEval loader has it: no gold turns, so not scored for recall; still graded.
          gold: [],
          scored: false,
          query: 'Q-2?',
          answer: 'Nothing says so',
          askedAt: '2023/05/30 (Tue) 23:40',
        }),
      ),
      retrieval(
        question({
          questionId: 'a3',
          category: 'single-session-user',
          query: 'Q-3?',
          answer: 'Pizza',
          askedAt: '2023/05/30 (Tue) 23:40',
        }),
      ),
    ];
    const run = await runQa(lme, { benchmark: 'longmemeval', ...models() });
    const sent = server.chatRequests().slice(before);
    assert.deepEqual(
      run.perQuestion.map((r) => r.correct),
      [true, true, false],
    );
    assert.deepEqual(run.accuracy.byCategory, {
      'multi-session': { correct: 1, total: 1, accuracy: 1 },
      'single-session-user': { correct: 0, total: 1, accuracy: 0 },
      'temporal-reasoning': { correct: 1, total: 1, accuracy: 1 },
    });
    assert.equal(run.accuracy.overall.correct, 2);
    assert.equal(run.topK, 20);
    const answerCalls = sent.filter((r) => r.model === 'answer-model');
    for (const r of answerCalls) {
      assert.equal(r.temperature, 0);
      assert.equal(r.top_p, 0.8);
      assert.equal(r.max_tokens, 2000);
      assert.match(
        r.messages[1]?.content ?? '',
        /^Question time: 2023\/05\/30 \(Tue\) 23:40 and question: Q-/,
      );
    }
    const first = answerCalls.find((r) => askedQuestion(r) === 'Q-1?');
    assert.ok(
      first?.messages[1]?.content.includes('fact 20.') && !first.messages[1].content.includes('fact 21.'),
    );
    const judged = sent.filter((r) => r.model === 'judge-model');
    assert.equal(judged.length, 3);
    for (const r of judged) assert.equal(r.response_format, undefined);
    assert.ok(judged.some((r) => /unanswerable/.test(r.messages[0]?.content ?? '')));
    assert.ok(judged.some((r) => /off-by-one/.test(r.messages[0]?.content ?? '')));
  });

  it('a failure that survives the client retries is recorded (with its message) and counted wrong', async () => {
    server.respondWith((request) =>
      request.model === 'answer-model' && askedQuestion(request) === 'Q-b?'
        ? { status: 500, body: errorBody('upstream down', 500) }
        : scripted(locomoAnswers, (fits) => JSON.stringify({ label: fits ? 'CORRECT' : 'WRONG' }))(request, {
            call: 0,
            signal: new AbortController().signal,
          }),
    );
    const before = server.chatRequests().length;
    const run = await runQa(locomo.slice(0, 2), { benchmark: 'locomo', ...models(1) });
    const failed = run.perQuestion[1];
    assert.equal(failed?.correct, null);
    assert.match(failed?.error ?? '', /answer: .*HTTP 500.*2 attempts.*upstream down/);
    assert.deepEqual(run.accuracy.overall, { correct: 1, total: 2, accuracy: 0.5 });
    const sent = server.chatRequests().slice(before);
    assert.equal(sent.filter((r) => askedQuestion(r) === 'Q-b?').length, 2, 'retried once by the client');
  });

  it('stops at a refused key (401): every question would fail the same way', async () => {
    server.respondWith(() => ({ status: 401, body: errorBody('Incorrect API key provided', 401) }));
    await assert.rejects(
      runQa(locomo.slice(0, 3), { benchmark: 'locomo', ...models(0), concurrency: 1 }),
      (error: unknown) => error instanceof LightmemError && error.code === 'config_invalid',
    );
  });

  it('a dry run builds and counts every prompt, sends nothing, and reports the planned calls', async () => {
    const before = server.requests.length;
    const run = await runQa(locomo, { benchmark: 'locomo', ...models(), dryRun: true, topK: 2 });
    assert.equal(server.requests.length, before, 'no request');
    assert.equal(run.dryRun, true);
    assert.equal(run.calls, 0);
    assert.equal(run.plannedCalls, 12);
    assert.equal(run.perQuestion.length, 6);
    assert.ok(
      run.perQuestion.every((r) => r.correct === null && r.answer === '' && r.completionTokens === 0),
    );
    const q = locomo[0]!.question;
    const expected =
      approxTokenCount(content(locomoAnswerMessages(q, locomo[0]!.retrieved, 2))) +
      approxTokenCount(content(locomoJudgeMessages(q, '')));
    assert.equal(run.perQuestion[0]?.promptTokens, expected);
    assert.equal(
      run.promptTokens,
      run.perQuestion.reduce((s, r) => s + r.promptTokens, 0),
    );
    assert.equal(run.completionTokens, 0);
    assert.deepEqual(run.accuracy.overall, { correct: 0, total: 6, accuracy: 0 });
  });

  it('refuses before sending anything when a prompt cannot be built', async () => {
    const before = server.requests.length;
    const bad = [
      retrieval(question({ questionId: 'x', category: 'temporal-reasoning', askedAt: 'now', answer: 'a' })),
      retrieval(question({ questionId: 'y', category: 'no-such-type', askedAt: 'now', answer: 'b' })),
    ];
    await assert.rejects(runQa(bad, { benchmark: 'longmemeval', ...models() }), InvalidInputError);
    await assert.rejects(runQa(bad, { benchmark: 'locomo', ...models(), concurrency: 0 }), RangeError);
    assert.equal(server.requests.length, before);
  });
});

describe('runQa concurrency', () => {
  let server: FakeOpenAiServer;
  before(async () => {
    server = await startFakeOpenAiServer({
      responder: async (request) => {
        await delay(10);
        return request.model === 'judge-model' ? '{"label": "CORRECT"}' : 'an answer';
      },
    });
  });
  after(async () => {
    await server.close();
  });

  it('keeps at most `concurrency` requests in flight, and more than one', async () => {
    const many = Array.from({ length: 16 }, (_, i) =>
      retrieval(question({ questionId: `s#${i}`, query: `Q${i}?`, answer: 'x' })),
    );
    const run = await runQa(many, {
      benchmark: 'locomo',
      answerer: new OpenAiChat({ baseUrl: server.baseUrl, apiKey: 'k', model: 'answer-model' }),
      judge: new OpenAiChat({ baseUrl: server.baseUrl, apiKey: 'k', model: 'judge-model' }),
      concurrency: 3,
    });
    assert.equal(run.calls, 32);
    assert.equal(server.chatRequests().length, 32);
    assert.deepEqual(run.accuracy.overall, { correct: 16, total: 16, accuracy: 1 });
    assert.ok(server.maxInFlight() <= 3, `max in flight ${server.maxInFlight()}`);
    assert.ok(server.maxInFlight() >= 2, `not serial: max in flight ${server.maxInFlight()}`);
  });
});
