import type { Clock } from '../../core/ports/clock.js';
import type { LlmLedger } from '../../core/ports/llm-ledger.js';
import { BudgetExceededError } from '../../core/errors.js';

/** A tenant's LLM token limits (prompt + completion tokens); null: no limit. */
export interface BudgetLimits {
  readonly tokensPerMinute: number | null;
  readonly tokensPerDay: number | null;
}

const minuteMs = 60_000;
const dayMs = 86_400_000;
/** A tenant over its daily budget is looked at again after this long. */
const dayRecheckMs = 15 * minuteMs;

/**
 * Per-tenant token budgets over sliding windows (the last minute, the last 24 hours), counted from the
 * cost ledger, so a restart forgets nothing. Checked before a call with an estimate of its tokens; the
 * check is not a reservation, so calls in flight at once may overshoot by their own size.
 */
export class TokenBudget {
  constructor(
    private readonly ledger: LlmLedger,
    private readonly clock: Clock,
    private readonly limitsOf: (tenantId: string) => BudgetLimits,
  ) {}

  /** Throws a BudgetExceededError (with when to try again) when the call would take the tenant over. */
  async admit(tenantId: string, estimatedTokens: number): Promise<void> {
    const limits = this.limitsOf(tenantId);
    const now = this.clock.now();
    const windows = [
      { limit: limits.tokensPerMinute, spanMs: minuteMs, per: 'minute', recheckMs: minuteMs },
      { limit: limits.tokensPerDay, spanMs: dayMs, per: 'day', recheckMs: dayRecheckMs },
    ];
    for (const { limit, spanMs, per, recheckMs } of windows) {
      if (limit === null) continue;
      const used = await this.ledger.tokensSince(tenantId, now - spanMs);
      if (used > 0 && used + estimatedTokens > limit) {
        throw new BudgetExceededError(
          `tenant ${tenantId} is over its LLM budget of ${limit} tokens per ${per} (${used} used, ~${estimatedTokens} asked)`,
          tenantId,
          now + recheckMs,
        );
      }
    }
  }
}
