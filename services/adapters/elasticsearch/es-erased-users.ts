import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';
import type { Refresh } from './es-bulk.js';
import { statusOf } from './es-errors.js';
import { mgetFound } from './es-mget.js';
import { ensureSmallIndex, tenantDocId } from './es-indices.js';
import type { AliasNames } from './es-mapping.js';

/**
 * The users erased from an Elasticsearch memory store and when: `<prefix>erased-users-v1` behind the alias
 * `<prefix>erased-users`, one document per (tenant, user). Work that was in flight during an erasure carries
 * times from before it: an indexer batch upserts memories extracted before it (`ingestedAt`), a consolidation
 * applies ops decided before it (`requestedAt`). The store refuses such writes for an erased user, so they
 * cannot bring back what the erasure removed; the user's new memories (made after it) go in as usual. As in
 * the SQLite store (erased-users.ts there).
 *
 * The document id is a hash of (tenantId, userId), and `erasedAt` is also the document's external version:
 * a write with `version_type: external_gte` only lands when it is not older than what is stored, so the
 * latest erasure wins in one request, without a read-then-write race. A scripted upsert (painless
 * `Math.max`) would need the scripting module, which the integ-test distribution the tests run lacks.
 */

/** When a user of a batch was erased (null: never). */
export type ErasedAt = (tenantId: string, userId: string) => number | null;

/** A memory of an erased user extracted before the erasure: writing it would bring it back. */
export function isFenced(
  erasedAt: ErasedAt,
  entry: Pick<MemoryEntry, 'tenantId' | 'userId' | 'ingestedAt'>,
): boolean {
  const erased = erasedAt(entry.tenantId, entry.userId);
  return erased !== null && entry.ingestedAt <= erased;
}

const keyword = { type: 'keyword' } as const;

const erasedUsersMappings: estypes.MappingTypeMapping = {
  dynamic: 'strict',
  properties: { tenantId: keyword, userId: keyword, erasedAt: { type: 'long' } },
};

/** Creates the first version of the erased-users index and its alias when missing (idempotent, race-safe). */
export async function ensureErasedUsersIndex(client: Client, names: AliasNames): Promise<string> {
  return ensureSmallIndex(client, names, erasedUsersMappings);
}

/** Document id of a user: tenant-qualified, of bounded length whatever the ids hold. */
export function erasedUserDocId(tenantId: string, userId: string): string {
  return tenantDocId(tenantId, userId);
}

/** Records that a user was erased at `at`, keeping the latest time when the user was erased before. */
export async function recordErasure(
  client: Client,
  names: AliasNames,
  tenantId: string,
  userId: string,
  at: number,
  refresh: Refresh,
): Promise<void> {
  if (!Number.isSafeInteger(at) || at < 0) {
    // An external version is a non-negative long.
    throw new LightmemError('internal', `erasure time must be a non-negative integer epoch ms (got ${at})`);
  }
  try {
    await client.index({
      index: names.alias,
      id: erasedUserDocId(tenantId, userId),
      document: { tenantId, userId, erasedAt: at },
      version: at,
      version_type: 'external_gte',
      refresh,
    });
  } catch (error) {
    // 409: a later erasure of this user is recorded already; it fences at least as much as this one.
    if (statusOf(error) !== 409) throw error;
  }
}

const erasedUserSource = z.object({ tenantId: z.string(), userId: z.string(), erasedAt: z.number().int() });

/**
 * When each user of a batch was erased, read with one real-time mget for the batch's distinct users (a
 * lookup outside them answers null). Reads the index whatever the refresh setting: a get by id sees writes
 * that are not refreshed yet.
 */
export async function erasedUsersLookup(
  client: Client,
  names: AliasNames,
  users: Iterable<{ readonly tenantId: string; readonly userId: string }>,
): Promise<ErasedAt> {
  const wanted = new Map<string, { tenantId: string; userId: string }>();
  for (const { tenantId, userId } of users)
    wanted.set(erasedUserDocId(tenantId, userId), { tenantId, userId });
  const erased = new Map<string, number>();
  if (wanted.size > 0) {
    const docs = await mgetFound(
      client,
      { index: names.alias, ids: [...wanted.keys()], realtime: true },
      erasedUserSource,
      'erased user',
    );
    for (const { id, source } of docs) {
      // The hashed id is checked against the ids it stands for.
      const want = wanted.get(id);
      if (source.tenantId === want?.tenantId && source.userId === want.userId)
        erased.set(id, source.erasedAt);
    }
  }
  return (tenantId, userId) => erased.get(erasedUserDocId(tenantId, userId)) ?? null;
}
