/**
 * Where a scheduler keeps the history of a user's sleep-time consolidation runs outside the memory store
 * (Temporal, in distributed mode): erasing a user deletes them too.
 */
export interface RunHistories {
  /** Deletes every run about the user (a running one is stopped first); returns how many. */
  eraseUser(tenantId: string, userId: string): Promise<number>;
  close(): Promise<void>;
}
