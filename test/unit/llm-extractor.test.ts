import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { OpenAiChat } from '../../services/adapters/openai/openai-chat.js';
import { SqliteLlmLedger } from '../../services/adapters/sqlite/sqlite-llm-ledger.js';
import { ExtractiveExtractor } from '../../services/stages/summarizer/extractive-extractor.js';
import { LlmExtractor, type MalformedPolicy } from '../../services/stages/summarizer/llm/llm-extractor.js';
import { LedgeredChat } from '../../services/stages/llm/ledgered-chat.js';
import { extractionPrompts } from '../../services/stages/summarizer/llm/prompts.generated.js';
import type { Role, TopicSegment } from '../../services/core/model/generated.js';
import { isRetryable } from '../../services/core/errors.js';
import {
  errorBody,
  startFakeOpenAiServer,
  type FakeOpenAiServer,
  type FakeResponder,
} from '../support/fake-openai-server.js';

const T0 = Date.UTC(2024, 2, 4, 8, 12); // Mon 2024-03-04 08:12 UTC = 09:12 at +01:00
const dir = mkdtempSync(join(tmpdir(), 'lightmem-llm-extractor-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

function turn(
  id: string,
  role: Role,
  speaker: string,
  text: string,
  minutes: number,
  sourceText: string | null = null,
) {
  return {
    turnId: id,
    seq: minutes,
    role,
    speaker,
    text,
    tokens: 10,
    occurredAt: T0 + minutes * 60_000,
    zoneOffset: '+01:00',
    sourceText,
  };
}

function segment(segmentId: string, turns: ReturnType<typeof turn>[], tenantId = 'brand-a'): TopicSegment {
  return {
    segmentId,
    tenantId,
    userId: 'cust-42',
    agentId: null,
    conversationId: 'call-9',
    sessionId: 'call-9',
    turns,
    boundary: { reason: 'similarity_drop', similarity: 0.1, threshold: 0.2, note: '' },
    endOfSession: false,
    segmenterVersion: 'seg-v1',
    scorerVersion: 'scorer-v1',
  };
}

/** A call with three speakers over two topics. */
const batch: TopicSegment[] = [
  segment('seg-1', [
    turn(
      't1',
      'customer',
      'customer',
      'order 88-1204 arrived cracked screen',
      0,
      'My order 88-1204 arrived with a cracked screen.',
    ),
    turn('t2', 'agent', 'agent Dana', 'opened case C-5521, replacement ships 48 hours', 1),
  ]),
  segment('seg-2', [
    turn('t3', 'system', 'ivr', 'call recorded', 2),
    turn('t4', 'supervisor', 'supervisor Lee', 'approved a 20 EUR credit', 3),
    turn('t5', 'customer', 'customer', 'text me, no calls', 4),
  ]),
];
const memorize = new Set<Role>(['customer', 'agent', 'supervisor']);

function answer(facts: { source_ids: number[]; kind?: string; fact: string; speaker?: string }[]): string {
  return JSON.stringify({ data: facts.map((f) => ({ kind: 'fact', speaker: '', ...f })) });
}

let server: FakeOpenAiServer;
let ledger: SqliteLlmLedger;

beforeEach(async () => {
  server = await startFakeOpenAiServer({ models: ['small-model'] });
  ledger = SqliteLlmLedger.open(join(dir, `ledger-${++files}.db`));
});
afterEach(async () => {
  await server.close();
  await ledger.close();
});

function extractor(
  options: { onMalformed?: MalformedPolicy; maxRetries?: number; baseUrl?: string; timeoutMs?: number } = {},
) {
  const chat = new OpenAiChat({
    baseUrl: options.baseUrl ?? server.baseUrl,
    apiKey: 'sk-test-secret',
    model: 'small-model',
    maxRetries: options.maxRetries ?? 2,
    timeoutMs: options.timeoutMs ?? 10_000,
  });
  return new LlmExtractor(
    new LedgeredChat({ chat, ledger, stage: 'summarizer', concurrency: 2, clock: { now: () => T0 } }),
    {
      memorizeRoles: memorize,
      promptName: 'contact-center',
      prompt: extractionPrompts['contact-center'],
      maxTokens: 512,
      temperature: 0.1,
      onMalformed: options.onMalformed ?? 'extractive',
      fallback: new ExtractiveExtractor({ memorizeRoles: memorize, granularity: 'turn', splitWords: 0 }),
    },
  );
}

describe('LlmExtractor against a scripted OpenAI-protocol server', () => {
  it('sends the batch as topic blocks with zone-aware time, weekday, batch-local ids and every speaker', async () => {
    server.respondWith(() => answer([]));
    await extractor().extract(batch);
    const [request] = server.chatRequests();
    assert.ok(request !== undefined);
    assert.equal(request.messages[0]?.role, 'system');
    assert.equal(request.messages[0]?.content, extractionPrompts['contact-center']);
    assert.equal(
      request.messages[1]?.content,
      [
        '--- Topic 1 ---',
        '[2024-03-04T09:12:00+01:00, Mon] 1.customer: order 88-1204 arrived cracked screen',
        '[2024-03-04T09:13:00+01:00, Mon] 2.agent Dana: opened case C-5521, replacement ships 48 hours',
        '--- Topic 2 ---',
        '[2024-03-04T09:15:00+01:00, Mon] 3.supervisor Lee: approved a 20 EUR credit',
        '[2024-03-04T09:16:00+01:00, Mon] 4.customer: text me, no calls',
      ].join('\n'),
      'the ivr (a role not memorized) is left out; ids run over the batch',
    );
    assert.equal(request.response_format?.type, 'json_schema', 'structured output asked for first');
    assert.equal(request.max_tokens, 512);
  });

  it('maps cited ids to turn ids, keeps the kind, the first source turn time and the words said', async () => {
    server.respondWith(() =>
      answer([
        { source_ids: [1], kind: 'fact', fact: 'The customer order 88-1204 arrived with a cracked screen.' },
        {
          source_ids: [2, 1],
          kind: 'commitment',
          fact: 'Agent Dana promised a replacement within 48 hours after 2024-03-04.',
        },
        { source_ids: [4], kind: 'preference', fact: 'The customer wants text messages, not calls.' },
        { source_ids: [3], kind: 'something-else', fact: 'Supervisor Lee approved a 20 EUR credit.' },
      ]),
    );
    const result = await extractor().extract(batch);
    assert.deepEqual(result.problems, []);
    const byText = new Map(result.memories.map((m) => [m.text.slice(0, 20), m]));
    const promise = result.memories[1];
    assert.ok(promise !== undefined);
    assert.equal(promise.kind, 'commitment');
    assert.deepEqual(promise.sourceTurnIds, ['t1', 't2'], 'sorted in batch order');
    assert.equal(promise.occurredAt, T0, 'the time of its first source turn');
    assert.equal(promise.topicId, 'seg-1');
    assert.equal(promise.speaker, 'customer, agent Dana');
    assert.equal(
      promise.sourceText,
      'customer: My order 88-1204 arrived with a cracked screen.\nagent Dana: opened case C-5521, replacement ships 48 hours',
      'the uncompressed words said, for search',
    );
    assert.equal(result.memories[2]?.kind, 'preference');
    assert.deepEqual(result.memories[2]?.sourceTurnIds, ['t5']);
    assert.equal(result.memories[3]?.kind, 'fact', 'an unknown kind reads as fact');
    assert.equal(result.memories[3]?.topicId, 'seg-2');
    assert.equal(byText.size, 4);
  });

  it('rejects a fact citing an id outside the batch (never clamped), keeps the others and reports it', async () => {
    server.respondWith(() =>
      answer([
        { source_ids: [1], fact: 'The customer order 88-1204 arrived cracked.' },
        { source_ids: [4, 9], fact: 'A fact about a turn that is not in the batch.' },
      ]),
    );
    const result = await extractor().extract(batch);
    assert.equal(result.memories.length, 1);
    assert.deepEqual(result.memories[0]?.sourceTurnIds, ['t1']);
    assert.equal(result.problems.length, 1);
    assert.match(
      result.problems[0]?.reason ?? '',
      /1 of 2 facts rejected: they cite ids outside the batch \(1 to 4\)/,
    );
    assert.equal(server.chatRequests().length, 1, 'no repair: the answer was usable');
  });

  it('repairs a malformed answer with one request that quotes the parse error', async () => {
    server.respondWith((_request, { call }) =>
      call === 1
        ? '{"data": [{"source_ids": [1], "fact": "unterminated'
        : answer([{ source_ids: [1], fact: 'Order 88-1204 arrived cracked.' }]),
    );
    const result = await extractor().extract(batch);
    assert.equal(result.memories.length, 1);
    assert.deepEqual(result.problems, []);
    const repair = server.chatRequests()[1];
    assert.ok(repair !== undefined);
    assert.equal(repair.messages.length, 4);
    assert.equal(repair.messages[2]?.role, 'assistant');
    assert.match(repair.messages[3]?.content ?? '', /could not be used: the answer is not valid JSON/);
    const calls = await ledger.totals();
    assert.equal(calls[0]?.calls, 2);
  });

  it('an answer whose every fact cites ids outside the batch is repaired too', async () => {
    server.respondWith((_request, { call }) =>
      call === 1
        ? answer([{ source_ids: [17], fact: 'x' }])
        : answer([{ source_ids: [2], fact: 'Case C-5521 is open.' }]),
    );
    const result = await extractor().extract(batch);
    assert.deepEqual(result.memories[0]?.sourceTurnIds, ['t2']);
    assert.match(
      server.chatRequests()[1]?.messages[3]?.content ?? '',
      /ids outside the input \(17\); the input's ids are 1 to 4/,
    );
  });

  it('repairs an answer cut at max_tokens, asking for a complete one', async () => {
    server.respondWith((_request, { call }) =>
      call === 1
        ? { content: '{"data": [{"source_ids": [1], "fact": "Order', finishReason: 'length' }
        : answer([{ source_ids: [1], fact: 'Order 88-1204 arrived cracked.' }]),
    );
    const result = await extractor().extract(batch);
    assert.equal(result.memories.length, 1);
    const repair = server.chatRequests()[1];
    assert.equal(repair?.messages.length, 3, 'the cut answer is not sent back');
    assert.match(repair?.messages[2]?.content ?? '', /cut off at the token limit/);
    assert.equal(repair?.max_tokens, 1024, 'twice the completion tokens');
  });

  it('an answer made of placeholders copied from the shape is not a memory: it is repaired', async () => {
    server.respondWith((_request, { call }) =>
      call === 1
        ? answer([{ source_ids: [1, 2], fact: '<memory>', speaker: '<name>' }])
        : answer([{ source_ids: [1], fact: 'Order 88-1204 arrived cracked.' }]),
    );
    const result = await extractor().extract(batch);
    assert.deepEqual(
      result.memories.map((m) => m.text),
      ['Order 88-1204 arrived cracked.'],
    );
    assert.match(server.chatRequests()[1]?.messages[3]?.content ?? '', /placeholders \("<memory>"\)/);
    assert.doesNotMatch(
      server.chatRequests()[1]?.messages[3]?.content ?? '',
      /<memory>"\}/,
      'no placeholder to copy',
    );
  });

  it('falls back to extractive memories and reports the bad answer when the repair fails too', async () => {
    server.respondWith(() => 'Sure! Here are the facts: none.');
    const result = await extractor().extract(batch);
    assert.equal(server.chatRequests().length, 2, 'one request and one repair, no more');
    assert.deepEqual(
      result.memories.map((m) => m.sourceTurnIds[0]),
      ['t1', 't2', 't4', 't5'],
      'every memorized turn kept as an extractive memory',
    );
    assert.equal(result.problems.length, 1);
    assert.match(
      result.problems[0]?.reason ?? '',
      /unusable after a repair request \(turns kept as extractive memories\)/,
    );
    assert.equal(result.problems[0]?.payload, 'Sure! Here are the facts: none.');
  });

  it('with onMalformed dead-letter, a batch whose answer stays unusable makes no memories', async () => {
    server.respondWith(() => '[[[');
    const result = await extractor({ onMalformed: 'dead-letter' }).extract(batch);
    assert.deepEqual(result.memories, []);
    assert.match(result.problems[0]?.reason ?? '', /no memories made/);
  });

  it('honours Retry-After on 429', async () => {
    await server.close();
    server = await startFakeOpenAiServer({ models: ['small-model'], retryAfterMs: null });
    const arrivals: number[] = [];
    server.respondWith((_request, { call }) => {
      arrivals.push(Date.now());
      return call === 1
        ? { status: 429, body: errorBody('slow down', 429), headers: { 'retry-after': '1' } }
        : answer([]);
    });
    await extractor().extract(batch);
    assert.equal(arrivals.length, 2);
    const waited = (arrivals[1] ?? 0) - (arrivals[0] ?? 0);
    assert.ok(waited >= 900, `waited ${waited} ms for Retry-After: 1`);
  });

  it('retries 5xx; when the endpoint stays down the failure is retryable (the batch is tried again later) and recorded', async () => {
    server.respondWith((_request, { call }) =>
      call === 1 ? { status: 503 } : answer([{ source_ids: [1], fact: 'f' }]),
    );
    const ok = await extractor().extract(batch);
    assert.equal(ok.memories.length, 1);
    server.respondWith(() => ({ status: 500 }));
    const failure = await extractor({ maxRetries: 1 })
      .extract([segment('seg-9', [turn('t9', 'customer', 'customer', 'another batch', 9)])])
      .then(
        () => null,
        (error: unknown) => error,
      );
    assert.ok(isRetryable(failure), 'a retryable error: the stage retries the batch, nothing is dropped');
    assert.doesNotMatch((failure as Error).message, /sk-test-secret/);
    const totals = await ledger.totals();
    assert.equal(totals[0]?.failedCalls, 1);
  });

  it('a refused connection is retryable', async () => {
    const failure = await extractor({ baseUrl: 'http://127.0.0.1:9/v1', maxRetries: 0 })
      .extract(batch)
      .then(
        () => null,
        (error: unknown) => error,
      );
    assert.ok(isRetryable(failure));
  });

  it('a request answered before (a batch redone after a crash) is answered from the ledger, not paid again', async () => {
    const responder: FakeResponder = () =>
      answer([{ source_ids: [1], fact: 'Order 88-1204 arrived cracked.' }]);
    server.respondWith(responder);
    const first = await extractor().extract(batch);
    const again = await extractor().extract(batch);
    assert.deepEqual(again, first);
    assert.equal(server.chatRequests().length, 1);
    const [totals] = await ledger.totals();
    assert.equal(totals?.calls, 1);
    assert.equal(totals?.reusedAnswers, 1);
    assert.ok((totals?.promptTokens ?? 0) > 0, 'the tokens the endpoint reported');
  });

  it('steps down to json_object with a schema when the endpoint refuses json_schema (llama.cpp)', async () => {
    server.respondWith((request) =>
      request.response_format?.type === 'json_schema'
        ? { status: 400, body: errorBody('json_schema is not supported', 400) }
        : answer([{ source_ids: [2], fact: 'Case C-5521 is open.' }]),
    );
    const result = await extractor().extract(batch);
    assert.equal(result.memories.length, 1);
    const [first, second] = server.chatRequests();
    assert.equal(first?.response_format?.type, 'json_schema');
    assert.equal(second?.response_format?.type, 'json_object');
    assert.ok(second?.response_format?.['schema'] !== undefined, 'the schema travels beside json_object');
  });

  it('the prompt hash and the model are in the version: a prompt or model change gives new memory ids', () => {
    const a = extractor();
    assert.match(a.version, /small-model/);
    assert.match(a.promptHash, /^[0-9a-f]{12}$/);
    const general = new LlmExtractor(
      new LedgeredChat({
        chat: new OpenAiChat({ baseUrl: server.baseUrl, apiKey: 'k', model: 'small-model' }),
        ledger,
        stage: 'summarizer',
        concurrency: 1,
        clock: { now: () => T0 },
      }),
      {
        memorizeRoles: memorize,
        promptName: 'general',
        prompt: extractionPrompts.general,
        maxTokens: 512,
        temperature: 0.1,
        onMalformed: 'extractive',
        fallback: new ExtractiveExtractor({ memorizeRoles: memorize, granularity: 'turn', splitWords: 0 }),
      },
    );
    assert.notEqual(general.promptHash, a.promptHash);
  });
});
