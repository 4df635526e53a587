import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { OpenAiChat } from '../../services/adapters/openai/openai-chat.js';
import { SqliteLlmLedger } from '../../services/adapters/sqlite/sqlite-llm-ledger.js';
import { ExtractiveExtractor } from '../../services/stages/summarizer/extractive-extractor.js';
import { LlmExtractor, type OverBudgetPolicy } from '../../services/stages/summarizer/llm/llm-extractor.js';
import { LedgeredChat } from '../../services/stages/llm/ledgered-chat.js';
import { TokenBudget } from '../../services/stages/llm/token-budget.js';
import { extractionPrompts } from '../../services/stages/summarizer/llm/prompts.generated.js';
import { stmStatePrefix, summarizerStage } from '../../services/stages/summarizer/summarizer-stage.js';
import { statePrefix } from '../../services/stages/state-keys.js';
import { StmBufferState } from '../../services/stages/summarizer/stm-buffer.js';
import { InMemoryState } from '../../services/stages/in-memory-state.js';
import { summarizerNudgeJob } from '../../workflows/summarizer-nudges.js';
import { Topics } from '../../services/core/model/topics.js';
import type {
  ConversationEvent,
  MemoryEntry,
  Role,
  TopicSegment,
} from '../../services/core/model/generated.js';
import type { AppendRecord, EventLog, LogRecord } from '../../services/core/ports/event-log.js';
import { startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

const T0 = Date.UTC(2026, 10, 30, 9);
const dir = mkdtempSync(join(tmpdir(), 'lightmem-llm-budget-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

function segment(
  tenantId: string,
  id: string,
  options: { turns?: boolean; end?: boolean } = {},
): TopicSegment {
  return {
    segmentId: `${tenantId}-${id}`,
    tenantId,
    userId: 'cust-1',
    agentId: null,
    conversationId: 'call-1',
    sessionId: 'call-1',
    turns:
      options.turns === false
        ? []
        : [
            {
              turnId: `${id}-t1`,
              seq: 1,
              role: 'customer',
              speaker: 'customer',
              text: `my parcel ${id} is late again`,
              tokens: 8,
              occurredAt: T0,
              zoneOffset: '+00:00',
              sourceText: null,
            },
          ],
    boundary: { reason: 'session_end', similarity: null, threshold: null, note: '' },
    endOfSession: options.end ?? true,
    segmenterVersion: 'seg-v1',
    scorerVersion: 'scorer-v1',
  };
}

function records(values: TopicSegment[]): LogRecord<typeof Topics.segments>[] {
  return values.map((value, offset) => ({
    topic: Topics.segments,
    offset,
    key: `${value.tenantId}/${value.conversationId}`,
    value,
    appendedAt: T0,
  }));
}

const oneFact = JSON.stringify({
  data: [{ source_ids: [1], kind: 'fact', speaker: 'customer', fact: 'A parcel is late.' }],
});
const memorize = new Set<Role>(['customer']);

describe('per-tenant LLM budgets', () => {
  let server: FakeOpenAiServer;
  let ledger: SqliteLlmLedger;
  let now: number;
  const clock = { now: () => now };

  beforeEach(async () => {
    now = T0;
    server = await startFakeOpenAiServer({ models: ['m'], responder: () => oneFact });
    ledger = SqliteLlmLedger.open(join(dir, `ledger-${++files}.db`));
  });
  afterEach(async () => {
    await server.close();
    await ledger.close();
  });

  function stage(overBudget: OverBudgetPolicy) {
    const chat = new LedgeredChat({
      chat: new OpenAiChat({ baseUrl: server.baseUrl, apiKey: 'k', model: 'm', maxRetries: 0 }),
      ledger,
      stage: 'summarizer',
      concurrency: 2,
      clock,
    });
    // brand-a may use 1 token a minute (so one call, then it waits); brand-b has no limit.
    const budget = new TokenBudget(ledger, clock, (tenantId) => ({
      tokensPerMinute: tenantId === 'brand-a' ? 1 : null,
      tokensPerDay: null,
    }));
    const extractor = new LlmExtractor(chat, {
      memorizeRoles: memorize,
      promptName: 'general',
      prompt: extractionPrompts.general,
      maxTokens: 256,
      temperature: 0.1,
      onMalformed: 'extractive',
      fallback: new ExtractiveExtractor({ memorizeRoles: memorize, granularity: 'turn', splitWords: 0 }),
      budget,
      overBudget,
    });
    return summarizerStage({
      extractor,
      thresholdTokens: 512,
      countedRoles: memorize,
      embedderId: null,
      clock,
    });
  }

  const memoriesOf = (output: { records: readonly { topic: string; value: unknown }[] }): MemoryEntry[] =>
    output.records.filter((r) => r.topic === Topics.memories).map((r) => r.value as MemoryEntry);

  it('a tenant over budget waits (its batch kept in state) while another tenant goes on; the batch runs once the budget has room', async () => {
    const handler = stage('wait');
    const state = new InMemoryState();
    // brand-a spends its minute.
    state.apply((await handler(records([segment('brand-a', 's1')]), state)).state);
    assert.equal(server.chatRequests().length, 1);

    const output = await handler(records([segment('brand-a', 's2'), segment('brand-b', 's3')]), state);
    state.apply(output.state);
    const memories = memoriesOf(output);
    assert.deepEqual(
      memories.map((m) => m.tenantId),
      ['brand-b'],
      'brand-b extracted, brand-a not',
    );
    assert.equal(server.chatRequests().length, 2);
    const [keyA] = await state.keys(statePrefix(stmStatePrefix));
    const kept = StmBufferState.parse(JSON.parse((await state.get(keyA ?? '')) ?? '{}'));
    assert.equal(kept.deferred.length, 1, "brand-a's batch waits in its conversation's state");
    assert.equal(kept.deferred[0]?.retryAt, T0 + 60_000);

    // The summarizer-nudges job nudges the conversation once the deferral is due, not before.
    const appended: AppendRecord<typeof Topics.raw>[] = [];
    const log = {
      stateOf: () => state,
      append: (_topic: string, batch: AppendRecord<typeof Topics.raw>[]) => {
        appended.push(...batch);
        return Promise.resolve({ appended: batch.length, duplicates: 0, duplicateIndexes: [] });
      },
    } as unknown as EventLog;
    const job = summarizerNudgeJob(log, { intervalMs: 1_000, idleBufferMs: null });
    await job.run({ now: T0 + 30_000, signal: new AbortController().signal });
    assert.equal(appended.length, 0);
    now = T0 + 61_000;
    await job.run({ now, signal: new AbortController().signal });
    assert.equal(appended.length, 1);
    const nudge = appended[0]?.value as ConversationEvent;
    assert.equal(nudge.kind, 'flush');
    assert.equal(nudge.tenantId, 'brand-a');
    assert.equal(nudge.metadata['reason'], 'retry-extraction');

    // The segmenter turns the nudge into an empty segment (session still open): brand-a's batch runs.
    const retried = await handler(
      records([segment('brand-a', 'nudge', { turns: false, end: false })]),
      state,
    );
    state.apply(retried.state);
    assert.deepEqual(
      memoriesOf(retried).map((m) => [m.tenantId, m.sourceTurnIds[0], m.pipeline.promptHash !== null]),
      [['brand-a', 's2-t1', true]],
    );
    assert.deepEqual(await state.keys(statePrefix(stmStatePrefix)), [], 'nothing left waiting');
  });

  it('overBudget extractive: the batch becomes extractive memories at once, with the extractive pipeline version', async () => {
    const handler = stage('extractive');
    const state = new InMemoryState();
    state.apply((await handler(records([segment('brand-a', 's1')]), state)).state);
    const output = await handler(records([segment('brand-a', 's2')]), state);
    const [memory] = memoriesOf(output);
    assert.equal(server.chatRequests().length, 1, 'no call over budget');
    assert.equal(memory?.text, 'my parcel s2 is late again');
    assert.match(memory?.pipeline.extractor ?? '', /^extractive-v1/);
    assert.equal(memory?.pipeline.promptHash, null);
    assert.deepEqual(output.state, [{ key: output.state[0]?.key, value: null }]);
  });
});
