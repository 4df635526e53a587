import type { MemoryEntry } from '../../core/model/generated.js';

/** One target of sleep-time consolidation with the newer memories that may change it. */
export interface UpdateCase {
  readonly target: MemoryEntry;
  /** Newer memories similar to the target, oldest first (by occurredAt, then id). */
  readonly sources: readonly UpdateSource[];
}

export interface UpdateSource {
  readonly memory: MemoryEntry;
  /** Cosine similarity to the target. */
  readonly similarity: number;
}

/** Why a decider could not decide (the case becomes an `ignore`, and this a dead letter). */
export interface DecisionProblem {
  /** An ErrorCode-like reason: `malformed_answer`, `unknown_source`, `truncated_answer`. */
  readonly code: string;
  readonly reason: string;
  /** The answer as the model gave it (truncated). */
  readonly answer: string;
}

/**
 * What a decider makes of one case:
 * - `update`: the sources refine the target; `text` is the merged memory (a new version of the target).
 * - `supersede`: a newer source contradicts the target; `by` is that source's id.
 * - `ignore`: nothing to change (unrelated, already known), or the decider failed (`problem`).
 */
export type CaseDecision =
  | { readonly action: 'update'; readonly text: string; readonly reason: string }
  | { readonly action: 'supersede'; readonly by: string; readonly reason: string }
  | { readonly action: 'ignore'; readonly reason: string; readonly problem?: DecisionProblem | undefined };

export interface DecideContext {
  readonly tenantId: string;
  readonly userId: string;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Decides update / supersede / ignore for one target at a time (LightMem's update call, §9.3). Endpoint
 * failures are thrown (retryable ones are retried by the caller); an unusable answer is an `ignore` with a
 * problem, never a thrown error, so one bad answer does not stop the run.
 */
export interface UpdateDecider {
  /** Who decides, recorded on every op (`llm:<model>@<prompt hash>`): part of the op id. */
  readonly policy: string;
  /** The hash of the prompt the decisions come from (the pipeline version of the versions it writes). */
  readonly promptHash: string | null;
  decide(item: UpdateCase, context: DecideContext): Promise<CaseDecision>;
}
