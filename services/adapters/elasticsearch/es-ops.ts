import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import type { MemoryOp } from '../../core/model/generated.js';
import type { RecordedOp } from '../../core/ports/memory-store.js';
import { memoryEntrySchema } from '../memory/entry-schema.js';
import { memoryOpSchema } from '../memory/op-plan.js';
import { bulkWrite, type BulkOp, type Refresh } from './es-bulk.js';
import { bulkItemFailure, isIndexNotFound } from './es-errors.js';
import { mgetFound } from './es-mget.js';
import { ensureSmallIndex, tenantDocId } from './es-indices.js';
import type { AliasNames } from './es-mapping.js';
import { decodeSearch, type Hit } from './es-query.js';

type Query = estypes.QueryDslQueryContainer;

/**
 * The index of recorded ops: `<prefix>memory-ops-v1` behind the alias `<prefix>memory-ops`, with one
 * filtered alias per tenant (`<prefix>memory-ops-t-<hash>`) for reads, like the memories. One document per
 * op that was applied or found stale: the op as it was decided (replacements included), its outcome and
 * when it was applied. The document id is a hash of (tenantId, opId), so two tenants' ops never collide,
 * and it is written with `create`: a second writer of the same op gets a conflict (a duplicate).
 */

const keyword = { type: 'keyword' } as const;
const long = { type: 'long' } as const;

export const opsMappings: estypes.MappingTypeMapping = {
  dynamic: 'strict',
  properties: {
    opId: keyword,
    op: keyword,
    tenantId: keyword,
    userId: keyword,
    targetIds: keyword,
    replacementIds: keyword,
    reason: { type: 'text', index: false },
    requestedBy: keyword,
    requestedAt: long,
    sourceIds: keyword,
    validTo: long,
    decidedBy: keyword,
    // Kept whole, for history; never searched.
    replacements: { type: 'object', enabled: false },
    outcome: keyword,
    appliedAt: long,
  },
};

/** Creates the first version of the ops index and its alias when missing (idempotent, race-safe). */
export async function ensureOpsIndex(client: Client, names: AliasNames): Promise<string> {
  return ensureSmallIndex(client, names, opsMappings);
}

/** Document id of an op: tenant-qualified, of bounded length whatever the ids hold. */
export function opDocId(tenantId: string, opId: string): string {
  return tenantDocId(tenantId, opId);
}

export type RecordedOutcome = RecordedOp['outcome'];

/** The document recording `op`. Fields are copied one by one (the mapping is strict). */
export function toOpDocument(op: MemoryOp, outcome: RecordedOutcome, appliedAt: number): object {
  return {
    opId: op.opId,
    op: op.op,
    tenantId: op.tenantId,
    userId: op.userId,
    targetIds: [...op.targetIds],
    replacementIds: [...op.replacementIds],
    reason: op.reason,
    requestedBy: op.requestedBy,
    requestedAt: op.requestedAt,
    sourceIds: [...op.sourceIds],
    validTo: op.validTo,
    decidedBy: op.decidedBy,
    // Parsing drops anything an untyped caller added to an entry.
    replacements: op.replacements.map((entry) => memoryEntrySchema.parse(entry)),
    outcome,
    appliedAt,
  };
}

const opSourceSchema = memoryOpSchema.extend({
  outcome: z.enum(['applied', 'stale']),
  appliedAt: z.number().int(),
});

export function toRecordedOp(source: unknown, id: string): RecordedOp {
  const parsed = opSourceSchema.safeParse(source);
  if (!parsed.success) {
    throw new LightmemError('storage_corrupt', `memory store: unreadable op record ${id}`, {
      cause: parsed.error,
    });
  }
  const { outcome, appliedAt, ...op } = parsed.data;
  return { op, outcome, appliedAt };
}

/** Ids per mget and per search page. */
const PAGE = 1_000;
/** Ids per terms query of an erasure. */
const TERMS_CHUNK = 10_000;

const recordedOpSource = z.object({ tenantId: z.string(), opId: z.string() });

/** Which of these ops of `tenantId` are recorded (a real-time mget by document id). */
export async function readRecordedOpIds(
  client: Client,
  names: AliasNames,
  tenantId: string,
  opIds: readonly string[],
): Promise<Set<string>> {
  const keys = [...new Set(opIds)].map((opId) => ({ key: opDocId(tenantId, opId), tenantId, opId }));
  const recorded = await readRecordedKeys(client, names, keys);
  return new Set(keys.filter(({ key }) => recorded.has(key)).map(({ opId }) => opId));
}

/** Which of these op records exist (by document id, each checked against its tenant and opId). */
export async function readRecordedKeys(
  client: Client,
  names: AliasNames,
  keys: readonly { readonly key: string; readonly tenantId: string; readonly opId: string }[],
): Promise<Set<string>> {
  const recorded = new Set<string>();
  const expected = new Map(keys.map((entry) => [entry.key, entry]));
  const ids = [...expected.keys()];
  for (let start = 0; start < ids.length; start += PAGE) {
    const docs = await mgetFound(
      client,
      { index: names.alias, ids: ids.slice(start, start + PAGE), _source_includes: ['tenantId', 'opId'] },
      recordedOpSource,
      'op',
    );
    for (const { id, source } of docs) {
      // A get by id does not apply alias filters: the tenant is checked here (the id is tenant-qualified).
      const want = expected.get(id);
      if (source.tenantId === want?.tenantId && source.opId === want.opId) recorded.add(id);
    }
  }
  return recorded;
}

/**
 * The recorded ops of one tenant that name any of `ids` as a target or a replacement, through the tenant's
 * ops alias, in (appliedAt, opId) order. Empty when the tenant never recorded an op.
 */
export async function opsTouching(
  client: Client,
  names: AliasNames,
  tenantId: string,
  ids: readonly string[],
): Promise<{ id: string; recorded: RecordedOp }[]> {
  const found: { id: string; recorded: RecordedOp }[] = [];
  if (ids.length === 0) return found;
  await pageOps(client, names, tenantId, touching(ids), true, (hits) => {
    for (const hit of hits) found.push({ id: hit._id, recorded: toRecordedOp(hit._source, hit._id) });
  });
  return found;
}

/**
 * What an erasure takes from the ops index: every record of the tenant (`all`), or those of a user (when the
 * erasure is of a whole user) and those naming an erased memory as target, replacement or source.
 */
export type OpsErasure = 'all' | { readonly userId: string | null; readonly ids: readonly string[] };

/** Deletes a tenant's op records (they carry the text of the versions they wrote). */
export async function deleteOps(
  client: Client,
  names: AliasNames,
  tenantId: string,
  erasure: OpsErasure,
  refresh: Refresh,
): Promise<void> {
  const filters: (Query | null)[] = [];
  if (erasure === 'all') filters.push(null);
  else {
    if (erasure.userId !== null) filters.push({ term: { userId: erasure.userId } });
    // A terms query takes at most 65,536 values.
    for (let start = 0; start < erasure.ids.length; start += TERMS_CHUNK) {
      filters.push(touching(erasure.ids.slice(start, start + TERMS_CHUNK), true));
    }
  }
  for (const filter of filters) {
    await pageOps(client, names, tenantId, filter, false, async (hits) => {
      const ops: BulkOp[] = hits.map((hit) => ({ kind: 'delete', index: hit._index, id: hit._id }));
      for (const outcome of (await bulkWrite(client, ops, refresh)).values()) {
        if (outcome.status >= 300 && outcome.status !== 404) {
          throw bulkItemFailure(outcome.status, outcome.error, 'erase of op records');
        }
      }
    });
  }
}

function touching(ids: readonly string[], sources = false): Query {
  const fields = sources ? ['targetIds', 'replacementIds', 'sourceIds'] : ['targetIds', 'replacementIds'];
  return {
    bool: { should: fields.map((field) => ({ terms: { [field]: [...ids] } })), minimum_should_match: 1 },
  };
}

/** Pages (search_after on appliedAt, opId) through a tenant's op records matching `filter`. */
async function pageOps(
  client: Client,
  names: AliasNames,
  tenantId: string,
  filter: Query | null,
  withSource: boolean,
  onPage: (hits: Hit[]) => void | Promise<void>,
): Promise<void> {
  let after: (string | number | null)[] | undefined;
  for (;;) {
    let response: unknown;
    try {
      response = await client.search({
        index: names.tenantAlias(tenantId),
        query: { bool: { filter: [{ term: { tenantId } }, ...(filter === null ? [] : [filter])] } },
        size: PAGE,
        sort: [{ appliedAt: 'asc' }, { opId: 'asc' }],
        track_total_hits: false,
        allow_partial_search_results: false,
        _source: withSource,
        ...(after === undefined ? {} : { search_after: after }),
      });
    } catch (error) {
      if (isIndexNotFound(error)) return;
      throw error;
    }
    const hits = decodeSearch(response).hits.hits;
    if (hits.length > 0) await onPage(hits);
    const last = hits[hits.length - 1];
    if (hits.length < PAGE || last?.sort === undefined) return;
    after = last.sort;
  }
}
