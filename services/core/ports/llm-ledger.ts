import type { ChatCompletion } from './chat-model.js';

/** How a call to an LLM ended, as the caller judged its answer. */
export type LlmCallOutcome =
  /** An answer the caller could use. */
  | 'ok'
  /** An answer that did not decode or failed the caller's checks. */
  | 'malformed'
  /** Cut at max_tokens. */
  | 'truncated'
  /** No answer: the endpoint failed (after the client's own retries) or refused. */
  | 'failed'
  /** Not sent: the answer of the same request, recorded earlier, was used (a batch redone after a crash). */
  | 'reused';

/** One call to an LLM, recorded before the work that used it is committed. */
export interface LlmCall {
  readonly callId: string;
  /** Hash of everything sent (model, messages, format, limits): the same request has the same hash. */
  readonly requestHash: string;
  readonly tenantId: string;
  /** The user and conversation the call worked for (cost per customer, per call). */
  readonly userId: string;
  readonly conversationId: string;
  readonly stage: string;
  /** What the call was for: `extract`, `repair`, … */
  readonly purpose: string;
  readonly model: string;
  readonly promptHash: string | null;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly latencyMs: number;
  readonly outcome: LlmCallOutcome;
  /** Why it failed or was judged malformed (no secrets, no turn text). */
  readonly error: string | null;
  readonly at: number;
  /** The answer, kept so that a batch redone after a crash is not paid for twice; null when none. */
  readonly completion: ChatCompletion | null;
}

/**
 * What an erased user's calls carry instead of their user, conversation and request hash. Not a valid id
 * (parentheses), so it never names a real user.
 */
export const erasedUserMarker = '(erased)';

export interface LlmUsageTotals {
  readonly tenantId: string;
  /** Set when totals are grouped by user. */
  readonly userId?: string | undefined;
  readonly model: string;
  /** Calls sent (reused answers are not calls). */
  readonly calls: number;
  readonly failedCalls: number;
  readonly reusedAnswers: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly latencyMs: number;
}

export interface LlmUsageFilter {
  readonly tenantId?: string | undefined;
  /** Totals per (tenant, user, model) instead of per (tenant, model). */
  readonly byUser?: boolean | undefined;
  /** Epoch ms: calls at or after. */
  readonly since?: number | undefined;
}

/**
 * The cost ledger: every LLM call, durably, with its tenant, stage, model, tokens, latency and outcome;
 * and the answers of recent calls, so a request sent again (a batch redone after a crash) is answered from
 * here instead of paid twice.
 */
export interface LlmLedger {
  /** Durable when it resolves. */
  record(call: LlmCall): Promise<void>;
  /** The completion of the latest recorded call of this request that got an answer, or null. */
  answerOf(requestHash: string): Promise<ChatCompletion | null>;
  /** Totals per tenant and model, largest first. */
  totals(filter?: LlmUsageFilter): Promise<LlmUsageTotals[]>;
  /** Tokens (prompt + completion) a tenant's calls used since an instant (for budgets). */
  tokensSince(tenantId: string, since: number): Promise<number>;
  /**
   * Erases a user from the ledger: the answers of their calls (which carry their facts) are deleted, and
   * their call records keep only what the tenant's bill and budget need (tenant, stage, purpose, model,
   * tokens, latency, outcome, time): user, conversation, request hash and error text become
   * `erasedUserMarker`. Returns how many calls were the user's. Idempotent (again: 0).
   */
  eraseUser(tenantId: string, userId: string): Promise<number>;
  close(): Promise<void>;
}
