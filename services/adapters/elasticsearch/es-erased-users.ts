import { createHash } from 'node:crypto';
import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError, UnavailableError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';
import type { Refresh } from './es-bulk.js';
import { statusOf } from './es-errors.js';
import { ensureAliasedIndex } from './es-indices.js';
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
  return ensureAliasedIndex(client, names, {
    settings: { number_of_shards: 1, auto_expand_replicas: '0-1' },
    mappings: erasedUsersMappings,
  });
}

/** Document id of a user: tenant-qualified, of bounded length whatever the ids hold. */
export function erasedUserDocId(tenantId: string, userId: string): string {
  return createHash('sha256')
    .update(JSON.stringify([tenantId, userId]))
    .digest('hex');
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

const mgetSchema = z.object({
  docs: z.array(
    z.object({
      _id: z.string(),
      found: z.boolean().optional(),
      _source: z.object({ tenantId: z.string(), userId: z.string(), erasedAt: z.number().int() }).optional(),
      error: z.object({ type: z.string(), reason: z.string().nullish() }).loose().optional(),
    }),
  ),
});

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
    const response = mgetSchema.safeParse(
      await client.mget({ index: names.alias, ids: [...wanted.keys()], realtime: true }),
    );
    if (!response.success) {
      throw new LightmemError('internal', 'elasticsearch: unexpected mget response', {
        cause: response.error,
      });
    }
    for (const doc of response.data.docs) {
      if (doc.error !== undefined) {
        throw new UnavailableError(
          `elasticsearch mget of erased user ${doc._id} failed: ${doc.error.type}`,
          doc.error,
        );
      }
      const want = wanted.get(doc._id);
      const source = doc._source;
      if (doc.found !== true || source === undefined || want === undefined) continue;
      // The hashed id is checked against the ids it stands for.
      if (source.tenantId === want.tenantId && source.userId === want.userId) {
        erased.set(doc._id, source.erasedAt);
      }
    }
  }
  return (tenantId, userId) => erased.get(erasedUserDocId(tenantId, userId)) ?? null;
}
