import type { LlmLedger } from '../core/ports/llm-ledger.js';
import type { LlmCost } from './llm-dry-run.js';

const zero: LlmCost = { calls: 0, promptTokens: 0, completionTokens: 0 };

/** Live calls per user, as the ledger recorded them (reused answers cost nothing). */
export async function ledgerCosts(ledger: LlmLedger): Promise<Map<string, LlmCost>> {
  const costs = new Map<string, LlmCost>();
  for (const row of await ledger.totals({ byUser: true })) {
    const userId = row.userId ?? '';
    const before = costs.get(userId) ?? zero;
    costs.set(userId, {
      calls: before.calls + row.calls,
      promptTokens: before.promptTokens + row.promptTokens,
      completionTokens: before.completionTokens + row.completionTokens,
    });
  }
  return costs;
}

/** What a user's calls cost between two ledger snapshots (e.g. the calls of one phase). */
export function costBetween(
  before: ReadonlyMap<string, LlmCost>,
  after: ReadonlyMap<string, LlmCost>,
  userId: string,
): LlmCost {
  const a = before.get(userId) ?? zero;
  const b = after.get(userId) ?? zero;
  return {
    calls: b.calls - a.calls,
    promptTokens: b.promptTokens - a.promptTokens,
    completionTokens: b.completionTokens - a.completionTokens,
  };
}
