import { compositeKey } from '../model/keys.js';

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

/** The users of a batch, each once, with their counts summed (counts of 0 or less left out). */
export function countsPerUser(batch: readonly NewMemories[]): NewMemories[] {
  const users = new Map<string, NewMemories>();
  for (const item of batch) {
    if (item.count <= 0) continue;
    const key = compositeKey([item.tenantId, item.userId]);
    const seen = users.get(key);
    users.set(key, { tenantId: item.tenantId, userId: item.userId, count: (seen?.count ?? 0) + item.count });
  }
  return [...users.values()];
}
