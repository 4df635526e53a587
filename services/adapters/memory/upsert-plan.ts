import { LightmemError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';

/** What a store already holds under an entry's id, as far as an upsert needs to know. */
export interface ExistingMemory {
  readonly tenantId: string;
  readonly userId: string;
  readonly contentHash: string;
  readonly validTo: number | null;
  readonly supersededBy: string | null;
}

export type UpsertDecision =
  | {
      readonly action: 'insert' | 'update';
      readonly validTo: number | null;
      readonly supersededBy: string | null;
    }
  | { readonly action: 'unchanged' };

/**
 * Decides one upsert: insert a new id, leave an identical entry alone (same content hash), or update it,
 * with the validity to write. Never moves an id across tenants or users.
 */
export function planUpsert(
  entry: MemoryEntry,
  hash: string,
  existing: ExistingMemory | undefined,
): UpsertDecision {
  if (existing === undefined) {
    return { action: 'insert', validTo: entry.validTo, supersededBy: entry.supersededBy };
  }
  if (existing.tenantId !== entry.tenantId || existing.userId !== entry.userId) {
    // Ids are derived from the scope, so this is a bug or an attack; never move a memory across scopes.
    throw new LightmemError('conflict', `memory ${entry.id} already exists in another scope`, {
      field: 'entry.id',
    });
  }
  if (existing.contentHash === hash) return { action: 'unchanged' };
  // A supersession recorded by supersede() is sticky: re-writing the original entry (a replay, a
  // re-extraction) must not bring a replaced memory back to life. Only an explicit supersededBy wins.
  if (existing.supersededBy !== null && entry.supersededBy === null) {
    return { action: 'update', validTo: existing.validTo, supersededBy: existing.supersededBy };
  }
  return { action: 'update', validTo: entry.validTo, supersededBy: entry.supersededBy };
}
