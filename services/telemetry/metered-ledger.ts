import type { LlmCall, LlmLedger } from '../core/ports/llm-ledger.js';
import { count, observe } from './meters.js';

/** What a LedgeredChat uses of the ledger. */
export type CallLedger = Pick<LlmLedger, 'answerOf' | 'record'>;

/**
 * The ledger as an LLM caller sees it, with every recorded call counted in the metrics as well: calls by
 * tenant, stage, model and outcome, their tokens, and the latency of those that were sent. The ledger is
 * where every call passes (sent, failed or answered from an earlier call), so the counts and the ledger's
 * totals (`GET /v1/usage`) agree.
 */
export function meteredLedger(ledger: LlmLedger): CallLedger {
  return {
    answerOf: (hash) => ledger.answerOf(hash),
    record: async (call: LlmCall) => {
      await ledger.record(call);
      const labels = { tenant: call.tenantId, stage: call.stage, model: call.model };
      count('lightmem_llm_calls_total', { ...labels, outcome: call.outcome });
      if (call.promptTokens > 0)
        count('lightmem_llm_tokens_total', { ...labels, kind: 'prompt' }, call.promptTokens);
      if (call.completionTokens > 0) {
        count('lightmem_llm_tokens_total', { ...labels, kind: 'completion' }, call.completionTokens);
      }
      if (call.outcome !== 'reused') {
        observe(
          'lightmem_llm_call_duration_seconds',
          { stage: call.stage, model: call.model },
          call.latencyMs / 1000,
        );
      }
    },
  };
}
