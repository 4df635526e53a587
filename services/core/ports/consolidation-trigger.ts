/** New memories of one user landed in the store (the indexer tells the orchestrator). */
export interface NewMemories {
  readonly tenantId: string;
  readonly userId: string;
  readonly count: number;
}

/**
 * Tells sleep-time consolidation that memories arrived, so the user's entity workflow wakes (Temporal:
 * signal-with-start of `consolidate:<tenant>:<user>`). A failure is thrown (retryable when the
 * orchestrator is unreachable): the indexer's batch is then retried, never left unannounced.
 */
export interface ConsolidationTrigger {
  notify(batch: readonly NewMemories[]): Promise<void>;
  close(): Promise<void>;
}
