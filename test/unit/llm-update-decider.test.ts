import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { OpenAiChat } from '../../services/adapters/openai/openai-chat.js';
import { SqliteLlmLedger } from '../../services/adapters/sqlite/sqlite-llm-ledger.js';
import { LedgeredChat } from '../../services/stages/llm/ledgered-chat.js';
import {
  LlmUpdateDecider,
  updateRequest,
  type LlmUpdateDeciderSettings,
} from '../../services/stages/consolidation/llm/llm-update-decider.js';
import { consolidationPrompts } from '../../services/stages/consolidation/llm/prompts.generated.js';
import type { UpdateCase } from '../../services/stages/consolidation/decision.js';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import { InvalidInputError, isRetryable } from '../../services/core/errors.js';
import { errorBody, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2024, 2, 4, 8, 12); // Mon 2024-03-04 08:12 UTC = 09:12 at +01:00
const dir = mkdtempSync(join(tmpdir(), 'lightmem-llm-update-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

function memory(
  id: string,
  text: string,
  occurredAt: number,
  overrides: Partial<MemoryEntry> = {},
): MemoryEntry {
  return {
    id,
    tenantId: 'brand-a',
    userId: 'cust-42',
    agentId: null,
    conversationId: 'call-9',
    sessionId: 'call-9',
    text,
    kind: 'fact',
    topicId: 'seg-1',
    speaker: 'customer',
    occurredAt,
    zoneOffset: '+01:00',
    ingestedAt: occurredAt,
    validFrom: occurredAt,
    validTo: null,
    supersededBy: null,
    sourceTurnIds: [`turn-of-${id}`],
    pipeline: { scorer: 's', segmenter: 'g', extractor: 'e', promptHash: null, embedder: null },
    sourceText: null,
    ...overrides,
  };
}

const target = memory('mem_target_0001', 'The customer lives in Lyon and prefers phone calls.', T0);
const lunch = memory('mem_source_0001', 'The customer prefers calls after 6 pm.', T0 + 3 * DAY, {
  conversationId: 'call-10',
  zoneOffset: '-05:00',
});
const moved = memory('mem_source_0002', 'The customer moved from Lyon to Montreal.', T0 + 10 * DAY, {
  conversationId: 'call-11',
  speaker: 'agent Dana',
});
const item: UpdateCase = {
  target,
  sources: [
    { memory: lunch, similarity: 0.91 },
    { memory: moved, similarity: 0.84 },
  ],
};
const context = { tenantId: 'brand-a', userId: 'cust-42' };

function answer(fields: {
  action: string;
  memory?: string | null;
  by?: string | null;
  reason?: string;
}): string {
  return JSON.stringify({ reason: 'because', memory: null, by: null, ...fields });
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

const settings: LlmUpdateDeciderSettings = {
  promptName: 'update',
  prompt: consolidationPrompts.update,
  maxTokens: 256,
  temperature: 0,
};

function decider(options: { maxRetries?: number; prompt?: string } = {}) {
  const chat = new OpenAiChat({
    baseUrl: server.baseUrl,
    apiKey: 'sk-test-secret',
    model: 'small-model',
    maxRetries: options.maxRetries ?? 2,
    timeoutMs: 10_000,
  });
  return new LlmUpdateDecider(
    new LedgeredChat({ chat, ledger, stage: 'consolidation', concurrency: 2, clock: { now: () => T0 } }),
    { ...settings, prompt: options.prompt ?? settings.prompt },
  );
}

describe('LlmUpdateDecider against a scripted OpenAI-protocol server', () => {
  it('renders the target and the sources with local ids, zone-aware times and weekdays, and no ids', async () => {
    server.respondWith(() => answer({ action: 'ignore' }));
    const other = memory('mem_other_tenant', 'Someone else lives in Oslo.', T0, {
      tenantId: 'brand-b',
      userId: 'cust-77',
    });
    await decider().decide(item, context);
    const [request] = server.chatRequests();
    assert.ok(request !== undefined);
    assert.equal(request.messages[0]?.role, 'system');
    assert.equal(request.messages[0]?.content, consolidationPrompts.update);
    assert.equal(
      request.messages[1]?.content,
      [
        'Target:',
        'T [2024-03-04T09:12:00+01:00, Mon] customer: The customer lives in Lyon and prefers phone calls.',
        '',
        'Newer memories, oldest first:',
        'S1 [2024-03-07T03:12:00-05:00, Thu] customer: The customer prefers calls after 6 pm.',
        'S2 [2024-03-14T09:12:00+01:00, Thu] agent Dana: The customer moved from Lyon to Montreal.',
      ].join('\n'),
    );
    const sent = JSON.stringify(request);
    for (const id of [target.id, lunch.id, moved.id, 'brand-a', 'cust-42', 'call-9', other.id, 'brand-b']) {
      assert.ok(!sent.includes(id), `${id} is not sent to the model`);
    }
    assert.equal(request.response_format?.type, 'json_schema', 'structured output asked for');
    assert.equal(request.max_tokens, 256);
    assert.equal(request.temperature, 0);

    const mixed: UpdateCase = { target, sources: [{ memory: other, similarity: 0.95 }] };
    await assert.rejects(
      decider().decide(mixed, context),
      InvalidInputError,
      'another scope never reaches the model',
    );
    assert.equal(server.chatRequests().length, 1);
  });

  it('update: returns the merged text', async () => {
    const merged = 'The customer lives in Lyon and prefers phone calls after 6 pm.';
    server.respondWith(() =>
      answer({ action: 'update', memory: merged, reason: 'S1 refines the preference.' }),
    );
    const decision = await decider().decide(item, context);
    assert.deepEqual(decision, { action: 'update', text: merged, reason: 'S1 refines the preference.' });
  });

  it('supersede: `by` maps to the real id of the source it names', async () => {
    server.respondWith(() =>
      answer({ action: 'supersede', by: 'S2', reason: 'S2 says the customer moved.' }),
    );
    const decision = await decider().decide(item, context);
    assert.deepEqual(decision, { action: 'supersede', by: moved.id, reason: 'S2 says the customer moved.' });
  });

  it('ignore', async () => {
    server.respondWith(() => answer({ action: 'ignore', reason: 'Compatible, not the same fact.' }));
    const decision = await decider().decide(item, context);
    assert.deepEqual(decision, { action: 'ignore', reason: 'Compatible, not the same fact.' });
    assert.equal(server.chatRequests().length, 1);
  });

  it('an update that leaves the target as it is, is an ignore; a fenced answer is read', async () => {
    server.respondWith(
      () => `\`\`\`json\n${answer({ action: 'update', memory: ` ${target.text} ` })}\n\`\`\``,
    );
    const decision = await decider().decide(item, context);
    assert.equal(decision.action, 'ignore');
    assert.ok(decision.action === 'ignore' && decision.problem === undefined);
    assert.equal(server.chatRequests().length, 1);
  });

  it('a case without sources is an ignore without a call', async () => {
    const decision = await decider().decide({ target, sources: [] }, context);
    assert.equal(decision.action, 'ignore');
    assert.equal(server.chatRequests().length, 0);
  });

  it('an answer that stays malformed after the repair is an ignore with a malformed_answer problem', async () => {
    server.respondWith(() => 'Sure! The target should be updated.');
    const decision = await decider().decide(item, context);
    assert.equal(server.chatRequests().length, 2, 'one request and one repair, no more');
    assert.equal(decision.action, 'ignore');
    assert.ok(decision.action === 'ignore' && decision.problem !== undefined);
    assert.equal(decision.problem.code, 'malformed_answer');
    assert.match(decision.problem.reason, /unusable after a repair request: the answer is not valid JSON/);
    assert.equal(decision.reason, decision.problem.reason);
    assert.equal(decision.problem.answer, 'Sure! The target should be updated.');
    const repair = server.chatRequests()[1];
    assert.equal(repair?.messages.length, 4);
    assert.equal(repair?.messages[2]?.role, 'assistant');
    assert.match(repair?.messages[3]?.content ?? '', /could not be used: the answer is not valid JSON/);
    const [totals] = await ledger.totals();
    assert.equal(totals?.calls, 2);
  });

  it('a repaired answer is used: the repair quotes the problem (an update without a memory)', async () => {
    server.respondWith((_request, { call }) =>
      call === 1
        ? answer({ action: 'update', memory: '' })
        : answer({ action: 'update', memory: 'The customer lives in Lyon and prefers calls after 6 pm.' }),
    );
    const decision = await decider().decide(item, context);
    assert.equal(decision.action, 'update');
    assert.match(
      server.chatRequests()[1]?.messages[3]?.content ?? '',
      /the action is update but "memory" is empty or missing/,
    );
  });

  it('an unknown action is malformed and repaired', async () => {
    server.respondWith((_request, { call }) =>
      call === 1 ? answer({ action: 'delete' }) : answer({ action: 'supersede', by: 's1' }),
    );
    const decision = await decider().decide(item, context);
    assert.deepEqual(decision, { action: 'supersede', by: lunch.id, reason: 'because' });
    assert.match(server.chatRequests()[1]?.messages[3]?.content ?? '', /the action "delete" is not one of/);
  });

  it('a supersede naming an unknown source is repaired, and stays an ignore with unknown_source', async () => {
    server.respondWith(() => answer({ action: 'supersede', by: 'S7' }));
    const decision = await decider().decide(item, context);
    assert.equal(decision.action, 'ignore');
    assert.ok(decision.action === 'ignore' && decision.problem !== undefined);
    assert.equal(decision.problem.code, 'unknown_source');
    assert.match(decision.problem.reason, /"S7", which is not one of the newer memories \(S1 to S2\)/);
    assert.match(server.chatRequests()[1]?.messages[3]?.content ?? '', /"S7"/);
    const targetById = await decider().decide(
      { target, sources: [{ memory: lunch, similarity: 0.9 }] },
      context,
    );
    assert.ok(targetById.action === 'ignore' && targetById.problem?.code === 'unknown_source');
  });

  it('a cut answer is asked again with twice the tokens; cut twice is truncated_answer', async () => {
    server.respondWith((_request, { call }) =>
      call === 1
        ? { content: '{"reason": "S2 says', finishReason: 'length' }
        : answer({ action: 'supersede', by: 'S2' }),
    );
    const decision = await decider().decide(item, context);
    assert.equal(decision.action, 'supersede');
    const repair = server.chatRequests()[1];
    assert.equal(repair?.messages.length, 3, 'the cut answer is not sent back');
    assert.match(repair?.messages[2]?.content ?? '', /cut off at the token limit/);
    assert.equal(repair?.max_tokens, 512);

    server.respondWith(() => ({ content: '{"reason": "', finishReason: 'length' }));
    const cut = await decider().decide(
      { target: lunch, sources: [{ memory: moved, similarity: 0.9 }] },
      context,
    );
    assert.ok(cut.action === 'ignore' && cut.problem?.code === 'truncated_answer');
  });

  it('429 then success: retried by the client, one decision', async () => {
    server.respondWith((_request, { call }) =>
      call === 1
        ? { status: 429, body: errorBody('slow down', 429) }
        : answer({ action: 'supersede', by: 'S2' }),
    );
    const decision = await decider().decide(item, context);
    assert.deepEqual(decision, { action: 'supersede', by: moved.id, reason: 'because' });
    assert.equal(server.chatRequests().length, 2);
    const [totals] = await ledger.totals();
    assert.equal(totals?.calls, 1, 'one call as the ledger sees it');
    assert.equal(totals?.failedCalls, 0);
  });

  it('an endpoint that stays down is thrown (retryable), not swallowed', async () => {
    server.respondWith(() => ({ status: 503 }));
    const failure = await decider({ maxRetries: 1 })
      .decide(item, context)
      .then(
        () => null,
        (error: unknown) => error,
      );
    assert.ok(isRetryable(failure));
    const [totals] = await ledger.totals();
    assert.equal(totals?.failedCalls, 1);
  });

  it('the policy names the model and the prompt hash; it changes when the prompt changes', () => {
    const a = decider();
    assert.match(a.policy, /^llm:small-model@[0-9a-f]{12}$/);
    assert.equal(a.policy, `llm:small-model@${a.promptHash}`);
    assert.equal(decider().policy, a.policy, 'deterministic');
    const b = decider({ prompt: `${consolidationPrompts.update}\nBe brief.` });
    assert.notEqual(b.policy, a.policy);
  });

  it('the same case twice is answered from the ledger (one endpoint call)', async () => {
    server.respondWith(() => answer({ action: 'supersede', by: 'S2' }));
    const first = await decider().decide(item, context);
    const again = await decider().decide(item, context);
    assert.deepEqual(again, first);
    assert.equal(server.chatRequests().length, 1);
    const [totals] = await ledger.totals();
    assert.equal(totals?.calls, 1);
    assert.equal(totals?.reusedAnswers, 1);
  });

  it('updateRequest is the first request the decider sends (for dry runs)', async () => {
    server.respondWith(() => answer({ action: 'ignore' }));
    const { request, sources } = updateRequest(item, settings);
    assert.deepEqual(
      sources.map((s) => [s.localId, s.memory.id]),
      [
        ['S1', lunch.id],
        ['S2', moved.id],
      ],
    );
    await decider().decide(item, context);
    const sent = server.chatRequests()[0];
    assert.deepEqual(
      sent?.messages.map((m) => m.content),
      request.messages.map((m) => m.content),
    );
    assert.equal(sent?.max_tokens, request.maxTokens);
  });
});
