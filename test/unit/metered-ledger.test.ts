import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SqliteLlmLedger } from '../../services/adapters/sqlite/sqlite-llm-ledger.js';
import type { LlmCall } from '../../services/core/ports/llm-ledger.js';
import { meteredLedger } from '../../services/telemetry/metered-ledger.js';
import { metricTotal } from '../support/metric-total.js';

function call(outcome: LlmCall['outcome'], promptTokens: number, completionTokens: number): LlmCall {
  return {
    callId: `c-${outcome}-${promptTokens}`,
    requestHash: `h-${outcome}-${promptTokens}`,
    tenantId: 'meter-tenant',
    userId: 'u',
    conversationId: 'c',
    stage: 'summarizer',
    purpose: 'extract',
    model: 'qwen-test',
    promptHash: null,
    promptTokens,
    completionTokens,
    latencyMs: 250,
    outcome,
    error: outcome === 'failed' ? 'storage_unavailable: HTTP 503' : null,
    at: 1_700_000_000_000,
    completion: null,
  };
}

describe('LLM calls in the metrics (the metered ledger)', () => {
  it('counts every recorded call by tenant and outcome, its tokens, and the latency of those sent', async () => {
    const ledger = SqliteLlmLedger.open(':memory:');
    try {
      const metered = meteredLedger(ledger);
      const labels = { tenant: 'meter-tenant', stage: 'summarizer', model: 'qwen-test' };
      await metered.record(call('ok', 1200, 80));
      await metered.record(call('failed', 0, 0));
      await metered.record(call('reused', 0, 0));
      assert.equal(await metricTotal('lightmem_llm_calls_total', { ...labels, outcome: 'ok' }), 1);
      assert.equal(await metricTotal('lightmem_llm_calls_total', { ...labels, outcome: 'failed' }), 1);
      assert.equal(await metricTotal('lightmem_llm_calls_total', { ...labels, outcome: 'reused' }), 1);
      assert.equal(await metricTotal('lightmem_llm_tokens_total', { ...labels, kind: 'prompt' }), 1200);
      assert.equal(await metricTotal('lightmem_llm_tokens_total', { ...labels, kind: 'completion' }), 80);
      // A reused answer cost no time: only the two calls sent are timed.
      assert.equal(
        await metricTotal('lightmem_llm_call_duration_seconds_count', {
          stage: 'summarizer',
          model: 'qwen-test',
        }),
        2,
      );
      // The ledger's totals say the same: two calls sent, one answer reused.
      const [usage] = await ledger.totals({ tenantId: 'meter-tenant' });
      assert.deepEqual([usage?.calls, usage?.failedCalls, usage?.reusedAnswers], [2, 1, 1]);
    } finally {
      await ledger.close();
    }
  });
});
