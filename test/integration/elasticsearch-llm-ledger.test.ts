import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ElasticsearchLlmLedger } from '../../services/adapters/elasticsearch/elasticsearch-llm-ledger.js';
import type { LlmCall, LlmLedger } from '../../services/core/ports/llm-ledger.js';
import { llmLedgerContract } from '../contract/llm-ledger.contract.js';
import { deletePrefix, esUrl, freshPrefix, rawClient } from './support/elasticsearch.js';

const prefixes: string[] = [];
const prefixOf = new WeakMap<LlmLedger, string>();
after(async () => {
  const client = rawClient();
  try {
    for (const prefix of prefixes) await deletePrefix(client, prefix);
  } finally {
    await client.close();
  }
});

async function open(prefix: string, now?: () => number): Promise<ElasticsearchLlmLedger> {
  const ledger = await ElasticsearchLlmLedger.open({
    node: esUrl,
    indexPrefix: prefix,
    answerRetentionDays: 2,
    ...(now === undefined ? {} : { now }),
  });
  prefixOf.set(ledger, prefix);
  return ledger;
}

llmLedgerContract('ElasticsearchLlmLedger', {
  open: () => {
    const prefix = freshPrefix('ledger');
    prefixes.push(prefix);
    return open(prefix, () => 1_700_000_000_000);
  },
  reopen: async (ledger) => {
    const prefix = prefixOf.get(ledger) ?? '';
    await ledger.close();
    return open(prefix, () => 1_700_000_000_000);
  },
});

describe('ElasticsearchLlmLedger', () => {
  it('two processes see each other: totals and answers recorded by one are read by the other at once', async () => {
    const prefix = freshPrefix('ledger');
    prefixes.push(prefix);
    const summarizer = await open(prefix);
    const api = await open(prefix);
    try {
      const call: LlmCall = {
        callId: 'c1',
        requestHash: 'h1',
        tenantId: 'brand-a',
        userId: 'u',
        conversationId: 'c',
        stage: 'summarizer',
        purpose: 'extract',
        model: 'm',
        promptHash: 'p',
        promptTokens: 40,
        completionTokens: 2,
        latencyMs: 10,
        outcome: 'ok',
        error: null,
        at: Date.now(),
        completion: { text: '{"data": []}', promptTokens: 40, completionTokens: 2, finishReason: 'stop' },
      };
      await summarizer.record(call);
      // Real time: no refresh needed for a restarted summarizer to find its answer.
      assert.equal((await api.answerOf('h1'))?.text, '{"data": []}');
      assert.deepEqual(
        (await api.totals({ tenantId: 'brand-a' })).map((t) => [t.calls, t.promptTokens]),
        [[1, 40]],
      );
    } finally {
      await summarizer.close();
      await api.close();
    }
  });
});
