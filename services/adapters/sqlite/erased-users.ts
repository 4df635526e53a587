import { z } from 'zod';
import type { SqliteDatabase } from './database.js';

const erasedAtSchema = z.object({ erased_at: z.number().int() });

/**
 * The users erased from a SQLite memory store and when (table `erased_users`). Work that was in flight
 * during an erasure carries times from before it: an indexer batch upserts memories extracted before it
 * (`ingestedAt`), a consolidation applies ops decided before it (`requestedAt`). Such writes for an erased
 * user are refused, so they cannot bring back what the erasure removed; the user's new memories (made
 * after it) go in as usual.
 */
export class ErasedUsers {
  private readonly statements;

  constructor(db: SqliteDatabase) {
    this.statements = {
      record: db.prepare<[string, string, number]>(
        `INSERT INTO erased_users (tenant_id, user_id, erased_at) VALUES (?, ?, ?)
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET erased_at = MAX(erased_at, excluded.erased_at)`,
      ),
      get: db.prepare<[string, string]>(
        'SELECT erased_at FROM erased_users WHERE tenant_id = ? AND user_id = ?',
      ),
      any: db.prepare<[]>('SELECT 1 FROM erased_users LIMIT 1'),
    };
  }

  /** Records an erasure (inside the erasing transaction). */
  record(tenantId: string, userId: string, at: number): void {
    this.statements.record.run(tenantId, userId, at);
  }

  /**
   * A lookup for one write call (inside its transaction): when each user was erased, or null. Answers
   * null at once while no user was ever erased, and reads each user once per call.
   */
  lookup(): (tenantId: string, userId: string) => number | null {
    if (this.statements.any.get() === undefined) return () => null;
    const cache = new Map<string, number | null>();
    return (tenantId, userId) => {
      const key = JSON.stringify([tenantId, userId]);
      let at = cache.get(key);
      if (at === undefined) {
        const row = this.statements.get.get(tenantId, userId);
        at = row === undefined ? null : erasedAtSchema.parse(row).erased_at;
        cache.set(key, at);
      }
      return at;
    };
  }
}
