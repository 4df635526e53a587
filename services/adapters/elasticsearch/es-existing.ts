import type { Client } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError, UnavailableError } from '../../core/errors.js';
import type { ExistingMemory } from '../memory/upsert-plan.js';

/**
 * Real-time reads of the documents a write is about to change (upsert, applyOps): what they hold, in any
 * tenant, with the sequence numbers the conditional writes are made against. Never returned to a caller.
 */

/** Ids per mget. */
const PAGE = 1_000;

const existingSchema = z.object({
  _id: z.string(),
  _index: z.string(),
  found: z.boolean().optional(),
  _seq_no: z.number().int().optional(),
  _primary_term: z.number().int().optional(),
  _source: z
    .object({
      tenantId: z.string(),
      userId: z.string(),
      contentHash: z.string(),
      validTo: z.number().int().nullish(),
      supersededBy: z.string().nullish(),
      ingestedAt: z.number().int(),
      consolidatedAt: z.number().int().nullish(),
      closedBy: z.string().nullish(),
    })
    .optional(),
  error: z.object({ type: z.string(), reason: z.string().nullish() }).loose().optional(),
});
const mgetSchema = z.object({ docs: z.array(existingSchema) });

export interface ExistingDoc {
  readonly memory: ExistingMemory;
  /** The concrete index holding it. */
  readonly index: string;
  readonly ingestedAt: number;
  /** When a consolidation took it as a source (null: pending). */
  readonly consolidatedAt: number | null;
  /** The op that closed it, if an op did. */
  readonly closedBy: string | null;
  readonly seqNo: number;
  readonly primaryTerm: number;
}

/** What the index behind `alias` holds under `ids` (missing ids are absent from the map). */
export async function readExisting(
  client: Client,
  alias: string,
  ids: readonly string[],
): Promise<Map<string, ExistingDoc>> {
  const found = new Map<string, ExistingDoc>();
  const distinct = [...new Set(ids)];
  for (let start = 0; start < distinct.length; start += PAGE) {
    const response = mgetSchema.safeParse(
      await client.mget({
        index: alias,
        ids: distinct.slice(start, start + PAGE),
        _source_includes: [
          'tenantId',
          'userId',
          'contentHash',
          'validTo',
          'supersededBy',
          'ingestedAt',
          'consolidatedAt',
          'closedBy',
        ],
      }),
    );
    if (!response.success) {
      throw new LightmemError('internal', 'elasticsearch: unexpected mget response', {
        cause: response.error,
      });
    }
    for (const doc of response.data.docs) {
      if (doc.error !== undefined) {
        throw new UnavailableError(`elasticsearch mget of ${doc._id} failed: ${doc.error.type}`, doc.error);
      }
      const source = doc._source;
      if (doc.found !== true) continue;
      if (source === undefined || doc._seq_no === undefined || doc._primary_term === undefined) {
        throw new LightmemError('storage_corrupt', `memory store: unreadable document ${doc._id}`);
      }
      found.set(doc._id, {
        memory: {
          tenantId: source.tenantId,
          userId: source.userId,
          contentHash: source.contentHash,
          validTo: source.validTo ?? null,
          supersededBy: source.supersededBy ?? null,
        },
        index: doc._index,
        ingestedAt: source.ingestedAt,
        consolidatedAt: source.consolidatedAt ?? null,
        closedBy: source.closedBy ?? null,
        seqNo: doc._seq_no,
        primaryTerm: doc._primary_term,
      });
    }
  }
  return found;
}

/**
 * The op that closed a memory, kept when a rewrite keeps its closed validity (planUpsert keeps a recorded
 * supersession unless the entry brings its own).
 */
export function keptClosedBy(
  entrySupersededBy: string | null,
  existing: ExistingDoc | undefined,
): string | null {
  if (existing === undefined) return null;
  return existing.memory.supersededBy !== null && entrySupersededBy === null ? existing.closedBy : null;
}
