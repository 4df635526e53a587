import { Client, type estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { InvalidInputError, LightmemError, UnavailableError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';
import { assertId, assertScope, type Scope } from '../../core/model/scope.js';
import { systemClock, type Clock } from '../../core/ports/clock.js';
import type {
  WriteOptions,
  ApplyResult,
  ListRequest,
  MemoryHistory,
  MemoryStore,
  MemoryWrite,
  NearestRequest,
  Neighbour,
  OpWrite,
  PendingUser,
  RecordedOp,
  SearchHit,
  SearchRequest,
  StoreStats,
  UpsertResult,
} from '../../core/ports/memory-store.js';
import { contentHash } from '../memory/content-hash.js';
import {
  DEFAULT_FUSION,
  fuse,
  normaliseWeights,
  toSearchHits,
  type FusionWeights,
} from '../memory/memory-fusion.js';
import { queryTerms } from '../memory/query-terms.js';
import {
  checkErasureScope,
  checkLimit,
  checkSupersede,
  checkUserScope,
  checkVector,
  listPage,
  planList,
  validateWrite,
} from '../memory/request-checks.js';
import { planSearch } from '../memory/search-plan.js';
import { planUpsert } from '../memory/upsert-plan.js';
import { applyCheckedOps } from './es-apply-ops.js';
import { bulkWrite, type BulkOp, type Refresh } from './es-bulk.js';
import { EmbedderRecord, checkBatchEmbedder, embedderClaim } from './es-embedder.js';
import { bulkItemFailure, esFailure, isIndexNotFound, isTransientStatus } from './es-errors.js';
import { elasticsearchClient, type ElasticsearchSecurity } from './es-client.js';
import {
  ensureErasedUsersIndex,
  erasedUsersLookup,
  isFenced,
  recordErasure,
  type ErasedAt,
} from './es-erased-users.js';
import { keptClosedBy, readExisting } from './es-existing.js';
import { TenantAliases, ensureMemoryIndex } from './es-indices.js';
import {
  INTERNAL_FIELDS,
  MAX_ID_BYTES,
  hasMagnitude,
  indexNames,
  toDocument,
  toEntry,
  type IndexNames,
} from './es-mapping.js';
import { checkOps } from './es-op-checks.js';
import { deleteOps, ensureOpsIndex, opsTouching, readRecordedOpIds } from './es-ops.js';
import {
  CANDIDATE_FIELDS,
  PENDING,
  SEMANTIC_BOOST,
  asOfFilter,
  decodeCandidates,
  decodeMsearch,
  decodeSearch,
  knnClause,
  lexicalClause,
  liveFilter,
  memoryFilters,
  nearestClause,
  scopedQuery,
  type SearchResult,
} from './es-query.js';
import { inSpan, storeWriteSpan } from '../../telemetry/trace-context.js';

type Query = estypes.QueryDslQueryContainer;

export interface ElasticsearchMemoryStoreOptions {
  /** e.g. http://127.0.0.1:19200 */
  readonly node: string;
  /** Credentials and TLS (`elasticsearch.apiKey` | `username` + `password`, `elasticsearch.tls`). */
  readonly security?: ElasticsearchSecurity | undefined;
  /** e.g. `lightmem-`: the store's indices, aliases and template all start with it. */
  readonly indexPrefix: string;
  /** Weights of the lexical (BM25) and semantic (cosine) parts of the fused score; scaled to sum to 1. */
  readonly fusion?: FusionWeights | undefined;
  /** "Now" for validity checks (validTo in the future is still live). */
  readonly clock?: Clock | undefined;
  /** 'true' (visible to search when upsert returns; default), 'wait_for', or 'false'. */
  readonly refresh?: Refresh;
  readonly requestTimeoutMs?: number;
}

/** Optimistic-concurrency rounds of one upsert before it gives up with `busy` (retryable). */
const MAX_WRITE_ATTEMPTS = 5;
/** Ids per mget and per erase page. */
const PAGE = 1_000;

interface PendingWrite {
  readonly write: MemoryWrite;
  /** Position in the caller's batch (error fields name it). */
  readonly index: number;
  readonly hash: string;
}

const liveCountSchema = z.object({ live: z.object({ doc_count: z.number().int() }) });
const pendingUsersSchema = z.object({
  users: z.object({
    after_key: z.object({ tenantId: z.string(), userId: z.string() }).optional(),
    buckets: z.array(
      z.object({ key: z.object({ tenantId: z.string(), userId: z.string() }), doc_count: z.number().int() }),
    ),
  }),
});
const tenantsSchema = z.object({
  tenants: z.object({
    after_key: z.object({ tenantId: z.string() }).optional(),
    buckets: z.array(z.object({ key: z.object({ tenantId: z.string() }) })),
  }),
});
/** Buckets per page of the pending-users aggregation. */
const USERS_PAGE = 1_000;

/**
 * The distributed MemoryStore: Elasticsearch with a `text` field for BM25 and a `dense_vector` field for
 * kNN, fused exactly as the SQLite store fuses (shared memory-fusion.ts), from ONE search request per query.
 *
 * Hybrid search: the request is a bool query whose `should` holds the lexical part (a bool of `match`
 * clauses named `lexical`) and the semantic part (a `knn` query named `semantic`, the scope filters inside
 * its `filter`, boosted by SEMANTIC_BOOST), under the scope filters. With `include_named_queries_score`
 * each hit reports each part's own score, so the two candidate lists are recovered from one response: the
 * BM25 score and (1 + cosine) / 2 of the kNN part. The boost makes every positive-cosine kNN candidate
 * rank above every word-only match, so asking for k + n hits returns all k kNN candidates and the n best
 * BM25 matches whole. The candidates come back without any stored field (their id and occurredAt from doc
 * values, see CANDIDATE_FIELDS): reading each one's `_source`, vector included, cost more than the search.
 * The winners' documents are then loaded by id in a second request (like SQLite's row load); fetching
 * sources for the likely winners in the first request (an msearch of the top kNN and BM25 hits with
 * `_source`) was slower, as a source read costs about as much as a round trip.
 *
 * Tenancy: every read goes to the tenant's filtered alias (the alias filter is applied by Elasticsearch to
 * any query, kNN included), and every query body gets its scope filters from scopeFilters() through
 * searchScope(), the only way this class searches tenant data. Writes go to the main alias.
 *
 * Writes: upsert reads the existing documents with mget (real-time), decides insert / update / unchanged
 * with the shared planUpsert, and writes with the bulk helper using optimistic concurrency (create, or
 * index with if_seq_no); a write that lost a race is decided again. Erase finds the scope's ids with
 * search_after and bulk-deletes them (the server has no _delete_by_query), then the op records that name
 * them (their replacements hold memory text). Erasing a whole user first records when (es-erased-users.ts):
 * upsert and applyOps then refuse that user's memories extracted before it and ops decided before it (work
 * in flight during the erasure), counted as unchanged and stale, as in the SQLite store.
 *
 * Versions and consolidation: applyOps closes targets, writes new versions and records each op in the ops
 * index (es-apply-ops.ts, es-ops.ts); `asOf` searches read the versions valid at an event time; nearest
 * runs one kNN per request in one msearch; the pending set is the live memories without `consolidatedAt`.
 */
export class ElasticsearchMemoryStore implements MemoryStore {
  private readonly clock: Clock;
  private readonly refresh: Refresh;
  private readonly tenants: TenantAliases;
  /** The per-tenant aliases of the ops index. */
  private readonly opsTenants: TenantAliases;
  private readonly embedder: EmbedderRecord;
  private closed = false;

  private constructor(
    private readonly client: Client,
    private readonly names: IndexNames,
    private readonly weights: FusionWeights,
    options: ElasticsearchMemoryStoreOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.refresh = options.refresh ?? 'true';
    this.tenants = new TenantAliases(client, names);
    this.opsTenants = new TenantAliases(client, names.ops);
    this.embedder = new EmbedderRecord(client, names.alias);
  }

  /**
   * Connects and creates the template, the first index version and the alias when missing, maps fields
   * added since on an older index, and creates the ops and erased-users indices (all idempotent).
   */
  static async open(options: ElasticsearchMemoryStoreOptions): Promise<ElasticsearchMemoryStore> {
    const names = indexNames(options.indexPrefix);
    const weights = normaliseWeights(options.fusion ?? DEFAULT_FUSION);
    const refresh = options.refresh ?? 'true';
    if (!['true', 'wait_for', 'false'].includes(refresh)) {
      throw new LightmemError('config_invalid', `refresh must be true, wait_for or false (got ${refresh})`, {
        field: 'refresh',
      });
    }
    const timeout = options.requestTimeoutMs ?? 30_000;
    if (!Number.isSafeInteger(timeout) || timeout <= 0) {
      throw new LightmemError('config_invalid', 'requestTimeoutMs must be a positive integer', {
        field: 'requestTimeoutMs',
      });
    }
    // One retry of a failed connection inside the client; longer outages are the caller's to retry.
    const client = elasticsearchClient({
      node: options.node,
      security: options.security,
      requestTimeoutMs: timeout,
    });
    try {
      await ensureMemoryIndex(client, names);
      await ensureOpsIndex(client, names.ops);
      await ensureErasedUsersIndex(client, names.erasedUsers);
    } catch (error) {
      await client.close();
      throw esFailure(error, 'open');
    }
    return new ElasticsearchMemoryStore(client, names, weights, options);
  }

  // ---------------------------------------------------------------- writes

  async upsert(writes: readonly MemoryWrite[], options: WriteOptions = {}): Promise<UpsertResult> {
    this.ensureOpen();
    writes.forEach((write, index) => {
      validateWrite(write, index);
      checkIdSize(write.entry.id, `writes[${index}].entry.id`);
    });
    if (writes.length === 0) return { inserted: 0, updated: 0, unchanged: 0 };
    const span = storeWriteSpan('elasticsearch', writes.length, options.traceContext);
    return this.call('upsert', () => inSpan('memory store upsert', span, () => this.upsertAll(writes)));
  }

  /** The writes of one upsert call (see upsert). */
  private async upsertAll(writes: readonly MemoryWrite[]): Promise<UpsertResult> {
    const counts = { inserted: 0, updated: 0, unchanged: 0 };
    const erasedAt = await this.erasedUsersOf(writes.map((write) => write.entry));
    const kept = writes.flatMap((write, index) => {
      if (!isFenced(erasedAt, write.entry)) return [{ write, index }];
      // Extracted before its user was erased (an indexer batch in flight then): it stays erased.
      counts.unchanged++;
      return [];
    });
    if (kept.length === 0) return counts;
    const keptWrites = kept.map(({ write }) => write);
    const stored = await this.embedder.current();
    checkBatchEmbedder(stored, keptWrites);
    const beforeWrite = embedderClaim(this.embedder, stored, keptWrites);
    for (const tenantId of new Set(keptWrites.map((write) => write.entry.tenantId))) {
      await this.tenants.ensure(tenantId);
    }
    for (const round of distinctIdRounds(kept)) await this.upsertRound(round, counts, beforeWrite);
    await this.undoWritesOfErased(keptWrites.map((write) => write.entry));
    return counts;
  }

  /**
   * Closes the window between a write's erased-users lookup and the write landing: an erasure recorded in
   * between may have run its deletes before these writes arrived. So the lookup is made again after them,
   * and what was written of a user erased since (made before that erasure) is deleted. Either the erasure
   * was recorded before this second lookup (then it is seen here), or after it (then its deletes, which
   * follow its record and search a refreshed index, find these writes).
   */
  private async undoWritesOfErased(entries: readonly MemoryEntry[]): Promise<void> {
    const erasedAt = await this.erasedUsersOf(entries);
    const undo = entries.filter((entry) => isFenced(erasedAt, entry));
    if (undo.length === 0) return;
    const ops: BulkOp[] = undo.map((entry) => ({ kind: 'delete', index: this.names.alias, id: entry.id }));
    for (const [id, outcome] of await bulkWrite(this.client, ops, this.refresh)) {
      if (outcome.status >= 300 && outcome.status !== 404) {
        throw bulkItemFailure(
          outcome.status,
          outcome.error,
          `undoing the write of ${id} (its user was erased)`,
        );
      }
    }
  }

  /** Writes a batch in which every id occurs once, deciding again any write that lost a race. */
  private async upsertRound(
    round: readonly { write: MemoryWrite; index: number }[],
    counts: { inserted: number; updated: number; unchanged: number },
    beforeWrite: () => Promise<void>,
  ): Promise<void> {
    let pending: PendingWrite[] = round.map(({ write, index }) => ({
      write,
      index,
      hash: contentHash(write.entry, write.embedding),
    }));
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const existing = await readExisting(
        this.client,
        this.names.alias,
        pending.map((p) => p.write.entry.id),
      );
      const planned = new Map<string, { pending: PendingWrite; action: 'insert' | 'update' }>();
      const ops: BulkOp[] = [];
      for (const item of pending) {
        const { entry, embedding } = item.write;
        const old = existing.get(entry.id);
        const decision = planUpsert(entry, item.hash, old?.memory);
        if (decision.action === 'unchanged') {
          counts.unchanged++;
          continue;
        }
        const doc = toDocument(entry, {
          validTo: decision.validTo,
          supersededBy: decision.supersededBy,
          // The first ingest time is the one that counts (see contentHash).
          ingestedAt: old?.ingestedAt ?? entry.ingestedAt,
          contentHash: item.hash,
          embedding,
          // New memories are pending; a rewrite keeps whether a consolidation took it, and who closed it.
          consolidatedAt: old?.consolidatedAt ?? null,
          closedBy: keptClosedBy(entry.supersededBy, old),
        });
        const index = this.names.alias;
        ops.push(
          old === undefined
            ? { kind: 'create', index, id: entry.id, doc }
            : { kind: 'index', index, id: entry.id, ifSeqNo: old.seqNo, ifPrimaryTerm: old.primaryTerm, doc },
        );
        planned.set(entry.id, { pending: item, action: decision.action });
      }
      if (ops.length > 0) await beforeWrite();
      const outcomes = await bulkWrite(this.client, ops, this.refresh);
      const lostRace: PendingWrite[] = [];
      for (const [id, { pending: item, action }] of planned) {
        const outcome = outcomes.get(id);
        if (outcome === undefined)
          throw new LightmemError('internal', `bulk write reported nothing for ${id}`);
        if (outcome.status < 300) counts[action === 'insert' ? 'inserted' : 'updated']++;
        else if (outcome.status === 409) lostRace.push(item);
        else throw bulkItemFailure(outcome.status, outcome.error, 'upsert', `writes[${item.index}].entry`);
      }
      if (lostRace.length === 0) return;
      pending = lostRace;
    }
    throw new LightmemError('busy', 'memories kept changing while being written; try again', {
      retryable: true,
    });
  }

  async supersede(scope: Scope, ids: readonly string[], by: string, at: number): Promise<number> {
    this.ensureOpen();
    let pending = checkSupersede(scope, ids, by, at);
    if (pending.length === 0) return 0;
    return this.call('supersede', async () => {
      let changed = 0;
      for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
        // Only live documents change (a memory keeps the first replacement it got).
        const result = await this.searchScope(
          scope,
          [{ ids: { values: pending } }, { bool: { must_not: [{ exists: { field: 'supersededBy' } }] } }],
          [],
          { size: pending.length, _source: false, seq_no_primary_term: true },
        );
        const ops: BulkOp[] = (result?.hits.hits ?? []).map((hit) => {
          if (hit._seq_no === undefined || hit._primary_term === undefined) {
            throw new LightmemError('internal', `elasticsearch: no sequence number for ${hit._id}`);
          }
          const doc = { validTo: at, supersededBy: by };
          return {
            kind: 'update',
            index: hit._index,
            id: hit._id,
            ifSeqNo: hit._seq_no,
            ifPrimaryTerm: hit._primary_term,
            doc,
          };
        });
        const outcomes = await bulkWrite(this.client, ops, this.refresh);
        pending = [];
        for (const [id, outcome] of outcomes) {
          if (outcome.status < 300) changed++;
          else if (outcome.status === 409) pending.push(id);
          else if (outcome.status !== 404) throw bulkItemFailure(outcome.status, outcome.error, 'supersede');
        }
        if (pending.length === 0) return changed;
      }
      throw new LightmemError('busy', 'memories kept changing while being superseded; try again', {
        retryable: true,
      });
    });
  }

  /**
   * Erases a data subject (a user or a conversation; see checkErasureScope) and its op records (they carry
   * the text of the versions they wrote): those of the user when a whole user is erased, and those naming
   * an erased memory. Returns the ids erased. Erasing a whole user also records the erasure: from then on,
   * writes of that user's memories extracted before it (ingestedAt) and ops decided before it are refused.
   */
  async erase(scope: Scope): Promise<string[]> {
    this.ensureOpen();
    checkErasureScope(scope);
    // The user whose whole data this erases (not one agent, conversation or session of theirs).
    const wholeUser =
      scope.agentId === undefined && scope.conversationId === undefined && scope.sessionId === undefined
        ? scope.userId
        : undefined;
    if (wholeUser !== undefined) {
      // Recorded before the deletes: an upsert of an in-flight batch that comes after them is refused, where
      // one recorded after could slip in between and bring erased memories back.
      const at = this.clock.now();
      await this.call('erase', () =>
        recordErasure(this.client, this.names.erasedUsers, scope.tenantId, wholeUser, at, this.refresh),
      );
    }
    // Every write that landed before this point is searched, whatever the refresh setting.
    await this.call('erase', () => this.client.indices.refresh({ index: this.names.alias }));
    const erased = await this.eraseWhere(scope);
    const userId = scope.conversationId === undefined ? (scope.userId ?? null) : null;
    await this.call('erase', () =>
      deleteOps(this.client, this.names.ops, scope.tenantId, { userId, ids: erased }, this.refresh),
    );
    return erased;
  }

  /** Deletes every memory and op record of a tenant (off-boarding). Not part of the MemoryStore port on purpose. */
  async eraseTenant(tenantId: string): Promise<string[]> {
    this.ensureOpen();
    assertId(tenantId, 'tenantId');
    const erased = await this.eraseWhere({ tenantId });
    await this.call('erase', () => deleteOps(this.client, this.names.ops, tenantId, 'all', this.refresh));
    return erased;
  }

  /** Pages through the scope's ids in id order (search_after) and bulk-deletes each page. */
  private async eraseWhere(scope: Scope): Promise<string[]> {
    return this.call('erase', async () => {
      const erased: string[] = [];
      let after: string | undefined;
      for (;;) {
        const result = await this.searchScope(scope, [], [], {
          size: PAGE,
          _source: false,
          sort: [{ id: 'asc' }],
          ...(after === undefined ? {} : { search_after: [after] }),
        });
        const hits = result?.hits.hits ?? [];
        if (hits.length === 0) break;
        const ops: BulkOp[] = hits.map((hit) => ({ kind: 'delete', index: hit._index, id: hit._id }));
        for (const [id, outcome] of await bulkWrite(this.client, ops, this.refresh)) {
          if (outcome.status < 300) erased.push(id);
          // 404: deleted meanwhile by someone else, so not by this call.
          else if (outcome.status !== 404) throw bulkItemFailure(outcome.status, outcome.error, 'erase');
        }
        after = hits[hits.length - 1]?._id;
        if (hits.length < PAGE) break;
      }
      if (erased.length > 0) this.expungeDeleted();
      return erased;
    });
  }

  /**
   * A deleted document's text stays in its Lucene segment until a merge drops it. Ask for that merge now
   * (in the background, as SQLite rewrites its FTS index after an erase); a failure only delays it.
   */
  private expungeDeleted(): void {
    this.client.indices
      .forcemerge({ index: this.names.alias, only_expunge_deletes: true, wait_for_completion: false })
      .catch(() => undefined);
  }

  // ---------------------------------------------------------------- versions (ops)

  /**
   * Applies ops in batch order, each idempotently by opId (see es-apply-ops.ts for how an op stays safe to
   * interrupt and to race without transactions). The whole batch is checked before anything is written.
   */
  async applyOps(ops: readonly OpWrite[]): Promise<ApplyResult> {
    this.ensureOpen();
    const checked = checkOps(ops);
    if (checked.length === 0) return { applied: 0, stale: 0, duplicate: 0 };
    return this.call('applyOps', async () => {
      const replacements = checked.flatMap((item) => item.replacements);
      const stored = await this.embedder.current();
      checkBatchEmbedder(stored, replacements);
      for (const tenantId of new Set(checked.map((item) => item.op.tenantId))) {
        await this.tenants.ensure(tenantId);
        await this.opsTenants.ensure(tenantId);
      }
      const erasedAt = await this.erasedUsersOf([
        ...checked.flatMap(({ op }) =>
          op.userId === null ? [] : [{ tenantId: op.tenantId, userId: op.userId }],
        ),
        ...replacements.map((write) => write.entry),
      ]);
      const result = await applyCheckedOps(
        {
          client: this.client,
          names: this.names,
          refresh: this.refresh,
          appliedAt: this.clock.now(),
          erasedAt,
          beforeWrite: embedderClaim(this.embedder, stored, replacements),
        },
        checked,
      );
      // The replacements written for a user erased meanwhile go again (see undoWritesOfErased).
      await this.undoWritesOfErased(replacements.map((write) => write.entry));
      return result;
    });
  }

  async recordedOps(tenantId: string, opIds: readonly string[]): Promise<Set<string>> {
    this.ensureOpen();
    assertId(tenantId, 'tenantId');
    opIds.forEach((opId, i) => assertId(opId, `opIds[${i}]`));
    if (opIds.length === 0) return new Set();
    return this.call('recordedOps', () => readRecordedOpIds(this.client, this.names.ops, tenantId, opIds));
  }

  /**
   * Walks the ops from `id` both ways: an applied update links its targets and its replacements; every op
   * naming a version (as target or replacement, whatever its kind or outcome) is listed. One ops search and
   * one memory search per step of the walk. Versions outside the scope are neither listed nor followed.
   */
  async history(scope: Scope, id: string): Promise<MemoryHistory | undefined> {
    this.ensureOpen();
    assertScope(scope);
    assertId(id, 'id');
    return this.call('history', async () => {
      const first = (await this.loadEntries(scope, [id])).get(id);
      if (first === undefined) return undefined;
      const versions = new Map<string, MemoryEntry>([[id, first]]);
      const ops = new Map<string, RecordedOpHit>();
      let frontier = [id];
      while (frontier.length > 0) {
        const linked = new Set<string>();
        for (const hit of await opsTouching(this.client, this.names.ops, scope.tenantId, frontier)) {
          ops.set(hit.id, hit);
          const { op, outcome } = hit.recorded;
          if (op.op !== 'update' || outcome !== 'applied') continue;
          for (const linkedId of [...op.targetIds, ...op.replacementIds]) {
            if (!versions.has(linkedId)) linked.add(linkedId);
          }
        }
        const found = await this.loadEntries(scope, [...linked]);
        for (const [foundId, entry] of found) versions.set(foundId, entry);
        frontier = [...found.keys()];
      }
      return {
        versions: [...versions.values()].sort(
          (a, b) => a.validFrom - b.validFrom || a.occurredAt - b.occurredAt || compare(a.id, b.id),
        ),
        ops: [...ops.values()]
          .map((hit) => hit.recorded)
          .sort((a, b) => a.appliedAt - b.appliedAt || compare(a.op.opId, b.op.opId)),
      };
    });
  }

  // ---------------------------------------------------------------- consolidation reads

  /** One kNN search per request, all in one msearch; cosine similarity is read back from the kNN score. */
  async nearest(requests: readonly NearestRequest[]): Promise<Neighbour[][]> {
    this.ensureOpen();
    requests.forEach((request, i) => checkNearest(request, i));
    if (requests.length === 0) return [];
    return this.call('nearest', async () => {
      const stored = await this.embedder.current();
      requests.forEach((request, i) => {
        if (stored === null) return;
        if (request.embedderId !== stored.id) {
          throw new LightmemError(
            'model_mismatch',
            `query embedded by ${request.embedderId} but this store holds vectors of ${stored.id}`,
            { field: `requests[${i}].embedderId` },
          );
        }
        if (request.vector.length !== stored.dims) {
          throw new LightmemError(
            'model_mismatch',
            `query vector has ${request.vector.length} dimensions; this store holds ${stored.dims}`,
            { field: `requests[${i}].vector` },
          );
        }
      });
      // No stored vector, or a zero query vector (no cosine with anything): no neighbours.
      const runs = requests.map((request) => stored !== null && hasMagnitude(request.vector));
      const now = this.clock.now();
      const results = await this.msearchScopes(
        requests
          .filter((_, i) => runs[i])
          .map((request) => {
            const filter = [liveFilter(now), ...occurredAtMost(request.occurredAtMost)];
            return {
              scope: request.scope,
              filter: [],
              should: [nearestClause(request.scope, filter, request.vector, request.k)],
              request: { size: request.k, _source: { excludes: INTERNAL_FIELDS } },
            };
          }),
      );
      let next = 0;
      return runs.map((ran) => {
        if (!ran) return [];
        const result = results[next++] ?? null;
        return (result?.hits.hits ?? []).map((hit) => {
          const score = hit._score;
          if (typeof score !== 'number') {
            throw new LightmemError('internal', `elasticsearch: no kNN score for ${hit._id}`);
          }
          // The cosine kNN score is (1 + cosine) / 2.
          return { memory: toEntry(hit._source, hit._id), similarity: 2 * score - 1 };
        });
      });
    });
  }

  async embeddings(scope: Scope, ids: readonly string[]): Promise<Map<string, Float32Array>> {
    this.ensureOpen();
    assertScope(scope);
    ids.forEach((id, i) => assertId(id, `ids[${i}]`));
    const distinct = [...new Set(ids)];
    return this.call('embeddings', async () => {
      const vectors = new Map<string, Float32Array>();
      for (let start = 0; start < distinct.length; start += PAGE) {
        const page = distinct.slice(start, start + PAGE);
        const result = await this.searchScope(
          scope,
          [{ ids: { values: page } }, { exists: { field: 'embedding' } }],
          [],
          { size: page.length, _source: ['embedding'] },
        );
        for (const hit of result?.hits.hits ?? []) {
          const parsed = embeddingSourceSchema.safeParse(hit._source);
          if (!parsed.success) {
            throw new LightmemError('storage_corrupt', `memory store: unreadable embedding of ${hit._id}`, {
              cause: parsed.error,
            });
          }
          vectors.set(hit._id, Float32Array.from(parsed.data.embedding));
        }
      }
      return vectors;
    });
  }

  /** Live memories of the user without consolidatedAt, in (occurredAt, id) order. */
  async pendingConsolidation(scope: Scope, limit: number): Promise<MemoryEntry[]> {
    this.ensureOpen();
    checkUserScope(scope);
    checkLimit(limit);
    return this.call('pendingConsolidation', async () => {
      const result = await this.searchScope(scope, [liveFilter(this.clock.now()), PENDING], [], {
        size: limit,
        sort: [{ occurredAt: 'asc' }, { id: 'asc' }],
        _source: { excludes: INTERNAL_FIELDS },
      });
      return (result?.hits.hits ?? []).map((hit) => toEntry(hit._source, hit._id));
    });
  }

  /** Sets consolidatedAt on the memories of `ids` in the scope that have none (conditional bulk updates). */
  async markConsolidated(scope: Scope, ids: readonly string[], at: number): Promise<number> {
    this.ensureOpen();
    checkUserScope(scope);
    ids.forEach((id, i) => assertId(id, `ids[${i}]`));
    if (!Number.isSafeInteger(at)) throw new InvalidInputError('at must be an integer epoch ms', 'at');
    let pending = [...new Set(ids)];
    if (pending.length === 0) return 0;
    return this.call('markConsolidated', async () => {
      let changed = 0;
      for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
        const ops: BulkOp[] = [];
        for (let start = 0; start < pending.length; start += PAGE) {
          const page = pending.slice(start, start + PAGE);
          const result = await this.searchScope(scope, [{ ids: { values: page } }, PENDING], [], {
            size: page.length,
            _source: false,
            seq_no_primary_term: true,
          });
          for (const hit of result?.hits.hits ?? []) {
            if (hit._seq_no === undefined || hit._primary_term === undefined) {
              throw new LightmemError('internal', `elasticsearch: no sequence number for ${hit._id}`);
            }
            ops.push({
              kind: 'update',
              index: hit._index,
              id: hit._id,
              ifSeqNo: hit._seq_no,
              ifPrimaryTerm: hit._primary_term,
              doc: { consolidatedAt: at },
            });
          }
        }
        pending = [];
        for (const [id, outcome] of await bulkWrite(this.client, ops, this.refresh)) {
          if (outcome.status < 300) changed++;
          // Changed meanwhile: decided again (it may have been marked by someone else).
          else if (outcome.status === 409) pending.push(id);
          else if (outcome.status !== 404) {
            throw bulkItemFailure(outcome.status, outcome.error, 'markConsolidated');
          }
        }
        if (pending.length === 0) return changed;
      }
      throw new LightmemError('busy', 'memories kept changing while being marked; try again', {
        retryable: true,
      });
    });
  }

  /**
   * Users with live pending memories: a composite aggregation on (tenantId, userId), paged, through the
   * tenant's alias when a tenant is given and through the main alias otherwise (operators).
   */
  async pendingUsers(tenantId?: string): Promise<PendingUser[]> {
    this.ensureOpen();
    if (tenantId !== undefined) assertId(tenantId, 'tenantId');
    return this.call('pendingUsers', async () => {
      const users: PendingUser[] = [];
      let after: { tenantId: string; userId: string } | undefined;
      for (;;) {
        const request = {
          size: 0,
          aggs: {
            users: {
              composite: {
                size: USERS_PAGE,
                sources: [
                  { tenantId: { terms: { field: 'tenantId' } } },
                  { userId: { terms: { field: 'userId' } } },
                ],
                ...(after === undefined ? {} : { after }),
              },
            },
          },
        };
        const filter = [liveFilter(this.clock.now()), PENDING];
        const result =
          tenantId === undefined
            ? decodeSearch(
                await this.client.search({
                  index: this.names.alias,
                  // Memories only: the meta document has no tenant.
                  query: { bool: { filter: [{ exists: { field: 'tenantId' } }, ...filter] } },
                  allow_partial_search_results: false,
                  ...request,
                }),
              )
            : await this.searchScope({ tenantId }, filter, [], request);
        if (result === null) return users;
        const parsed = pendingUsersSchema.safeParse(result.aggregations);
        if (!parsed.success) {
          throw new LightmemError('internal', 'elasticsearch: unexpected aggregation response', {
            cause: parsed.error,
          });
        }
        const { buckets, after_key: afterKey } = parsed.data.users;
        for (const { key, doc_count: pending } of buckets) users.push({ ...key, pending });
        if (buckets.length < USERS_PAGE || afterKey === undefined) return users;
        after = afterKey;
      }
    });
  }

  /** Every tenant with a memory in this store (operators: what a replay of every tenant compares). */
  async tenantIds(): Promise<string[]> {
    this.ensureOpen();
    return this.call('tenantIds', async () => {
      const tenants: string[] = [];
      let after: { tenantId: string } | undefined;
      for (;;) {
        const result = decodeSearch(
          await this.client.search({
            index: this.names.alias,
            size: 0,
            query: { exists: { field: 'tenantId' } },
            allow_partial_search_results: false,
            aggs: {
              tenants: {
                composite: {
                  size: USERS_PAGE,
                  sources: [{ tenantId: { terms: { field: 'tenantId' } } }],
                  ...(after === undefined ? {} : { after }),
                },
              },
            },
          }),
        );
        const parsed = tenantsSchema.safeParse(result?.aggregations);
        if (!parsed.success) {
          throw new LightmemError('internal', 'elasticsearch: unexpected aggregation response', {
            cause: parsed.error,
          });
        }
        const { buckets, after_key: afterKey } = parsed.data.tenants;
        tenants.push(...buckets.map((bucket) => bucket.key.tenantId));
        if (buckets.length < USERS_PAGE || afterKey === undefined) return tenants;
        after = afterKey;
      }
    });
  }

  /**
   * Deletes every index and template of this store's prefix, then closes it: a dropped pipeline version's
   * data. The names are resolved first (the server refuses wildcard deletes by default). Returns them.
   */
  async deleteIndices(): Promise<string[]> {
    this.ensureOpen();
    const deleted = await this.call('deleteIndices', async () => {
      const found = await this.client.indices.get(
        { index: `${this.names.prefix}*`, expand_wildcards: 'all', allow_no_indices: true },
        { ignore: [404] },
      );
      const names = Object.keys(found).filter((name) => name.startsWith(this.names.prefix));
      if (names.length > 0) await this.client.indices.delete({ index: names }, { ignore: [404] });
      await this.client.indices.deleteIndexTemplate({ name: this.names.template }, { ignore: [404] });
      return names;
    });
    await this.close();
    return deleted;
  }

  // ---------------------------------------------------------------- reads

  async search(request: SearchRequest): Promise<SearchHit[]> {
    this.ensureOpen();
    return this.call('search', async () => {
      const plan = planSearch(request, await this.embedder.current());
      const { scope, limit } = plan;
      const terms = queryTerms(request.text);
      // A zero query vector has no cosine with anything (the SQLite store gets no distance for it).
      const vector =
        plan.queryVector !== undefined && hasMagnitude(plan.queryVector) ? plan.queryVector : undefined;
      if (terms.length === 0 && vector === undefined) return [];
      // As of an event time: the versions valid then, superseded since or not (wins over includeSuperseded).
      const filters = [
        ...memoryFilters(plan.range, plan.live ? this.clock.now() : null),
        ...(plan.asOf === null ? [] : [asOfFilter(plan.asOf)]),
      ];
      const parts: Query[] = [];
      if (terms.length > 0) parts.push(lexicalClause(terms));
      if (vector !== undefined) parts.push(knnClause(scope, filters, vector, plan.semanticCandidates));
      const n = terms.length > 0 ? plan.lexicalCandidates : 0;
      const k = vector !== undefined ? plan.semanticCandidates : 0;
      const candidates = await this.searchScopeAs(decodeCandidates, scope, filters, parts, {
        size: n + k,
        ...CANDIDATE_FIELDS,
      });
      if (candidates === null) return [];

      const lexical: { key: number; id: string; occurredAt: number; item: string; bm25: number }[] = [];
      const semantic: { key: number; id: string; occurredAt: number; item: string; distance: number }[] = [];
      candidates.forEach(({ id, occurredAt, lexical: bm25, semantic: knn }, key) => {
        // fuse() reads BM25 as FTS5 reports it (negative, lower is better).
        if (bm25 !== null) lexical.push({ key, id, occurredAt, item: id, bm25: -bm25 });
        if (knn !== null) {
          // The cosine similarity's kNN score is (1 + cosine) / 2; the distance is 1 - cosine.
          const distance = 2 - (2 * knn) / SEMANTIC_BOOST;
          semantic.push({ key, id, occurredAt, item: id, distance });
        }
      });
      lexical.sort((a, b) => a.bm25 - b.bm25);
      const fused = fuse(lexical.slice(0, n), semantic, this.weights, plan.semanticActive, limit);
      const entries = await this.loadEntries(
        scope,
        fused.map((hit) => hit.item),
      );
      // A memory erased between the two requests is dropped.
      return toSearchHits(fused, (id) => entries.get(id));
    });
  }

  /** Full entries by id, still confined to the scope. */
  private async loadEntries(scope: Scope, ids: readonly string[]): Promise<Map<string, MemoryEntry>> {
    const entries = new Map<string, MemoryEntry>();
    if (ids.length === 0) return entries;
    const result = await this.searchScope(scope, [{ ids: { values: [...ids] } }], [], {
      size: ids.length,
      _source: { excludes: INTERNAL_FIELDS },
    });
    for (const hit of result?.hits.hits ?? []) entries.set(hit._id, toEntry(hit._source, hit._id));
    return entries;
  }

  /** Any memory of the scope by id, live or not (history stays readable). */
  async get(scope: Scope, id: string): Promise<MemoryEntry | undefined> {
    this.ensureOpen();
    assertScope(scope);
    assertId(id, 'id');
    return this.call('get', async () => (await this.loadEntries(scope, [id])).get(id));
  }

  /** Pages through a scope in (occurredAt, id) order; the cursor is the last key seen (search_after). */
  async list(request: ListRequest): Promise<{ items: MemoryEntry[]; nextCursor: string | null }> {
    this.ensureOpen();
    const { scope, limit, after, live } = planList(request);
    return this.call('list', async () => {
      const result = await this.searchScope(scope, memoryFilters({}, live ? this.clock.now() : null), [], {
        size: limit + 1,
        sort: [{ occurredAt: 'asc' }, { id: 'asc' }],
        _source: { excludes: INTERNAL_FIELDS },
        ...(after === null ? {} : { search_after: after }),
      });
      return listPage(result?.hits.hits ?? [], limit, (hit) => toEntry(hit._source, hit._id));
    });
  }

  /** Counts in a scope, or in the whole index without one (operators). */
  async stats(scope?: Scope): Promise<StoreStats> {
    this.ensureOpen();
    if (scope !== undefined) assertScope(scope);
    return this.call('stats', async () => {
      const request = {
        size: 0,
        track_total_hits: true,
        aggs: { live: { filter: liveFilter(this.clock.now()) } },
      };
      const result =
        scope === undefined
          ? decodeSearch(
              await this.client.search({
                index: this.names.alias,
                // Memories only: the meta document has no tenant.
                query: { bool: { filter: [{ exists: { field: 'tenantId' } }] } },
                ...request,
              }),
            )
          : await this.searchScope(scope, [], [], request);
      const total = result?.hits.total?.value ?? 0;
      const live = result === null ? 0 : liveCountSchema.parse(result.aggregations).live.doc_count;
      return { live, superseded: total - live, embedderId: (await this.embedder.current())?.id ?? null };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.close();
  }

  // ---------------------------------------------------------------- helpers

  /**
   * The one way tenant data is searched: through the tenant's filtered alias, with the scope's filters
   * (scopedQuery) plus `filter` and, when given, at least one of `should`. Null when the tenant has no
   * alias yet, i.e. never wrote anything.
   */
  private async searchScope(
    scope: Scope,
    filter: readonly Query[],
    should: readonly Query[],
    request: Omit<estypes.SearchRequest, 'index' | 'query'>,
  ): Promise<SearchResult | null> {
    return this.searchScopeAs(decodeSearch, scope, filter, should, request);
  }

  /** searchScope with the response read by `decode` (e.g. hits without `_id`, see CANDIDATE_FIELDS). */
  private async searchScopeAs<T>(
    decode: (response: unknown) => T,
    scope: Scope,
    filter: readonly Query[],
    should: readonly Query[],
    request: Omit<estypes.SearchRequest, 'index' | 'query'>,
  ): Promise<T | null> {
    try {
      const response = await this.client.search({
        index: this.tenants.name(scope.tenantId),
        query: scopedQuery(scope, filter, should),
        track_total_hits: false,
        allow_partial_search_results: false,
        ...request,
      });
      return decode(response);
    } catch (error) {
      if (isIndexNotFound(error)) return null;
      throw error;
    }
  }

  /**
   * Several searchScope requests in one msearch round trip, each through its tenant's alias with its scope's
   * filters. An item is null when its tenant has no alias yet.
   */
  private async msearchScopes(
    searches: readonly {
      scope: Scope;
      filter: readonly Query[];
      should: readonly Query[];
      request: Omit<estypes.SearchRequest, 'index' | 'query'>;
    }[],
  ): Promise<(SearchResult | null)[]> {
    if (searches.length === 0) return [];
    const response = await this.client.msearch({
      searches: searches.flatMap(({ scope, filter, should, request }) => [
        { index: this.tenants.name(scope.tenantId), allow_partial_search_results: false },
        { query: scopedQuery(scope, filter, should), track_total_hits: false, ...request },
      ]),
    });
    return decodeMsearch(response).map((item) => {
      if ('hits' in item) return item;
      if (item.status === 404 && item.type === 'index_not_found_exception') return null;
      const reason = `elasticsearch msearch item failed (HTTP ${item.status ?? '?'}): ${item.type}: ${item.reason}`;
      if (item.status !== undefined && isTransientStatus(item.status))
        throw new UnavailableError(reason, item);
      throw new LightmemError('internal', reason, { cause: item });
    });
  }

  /** When each of these users was erased (one mget for the batch). */
  private async erasedUsersOf(
    users: readonly { readonly tenantId: string; readonly userId: string }[],
  ): Promise<ErasedAt> {
    return erasedUsersLookup(this.client, this.names.erasedUsers, users);
  }

  /** Runs `work`, turning Elasticsearch failures into LightmemErrors (transient ones retryable). */
  private async call<T>(action: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw esFailure(error, action);
    }
  }

  private ensureOpen(): void {
    if (this.closed) throw new LightmemError('storage_unavailable', 'memory store is closed');
  }
}

/**
 * Splits a batch so each round holds an id once, in batch order: a later write of the same id is decided
 * against the earlier one, as when the writes run one after another. `index` is the position in the
 * caller's batch.
 */
function distinctIdRounds(
  writes: readonly { write: MemoryWrite; index: number }[],
): { write: MemoryWrite; index: number }[][] {
  const rounds: { write: MemoryWrite; index: number }[][] = [];
  const seen = new Map<string, number>();
  for (const item of writes) {
    const round = seen.get(item.write.entry.id) ?? 0;
    seen.set(item.write.entry.id, round + 1);
    (rounds[round] ??= []).push(item);
  }
  return rounds;
}

function checkIdSize(id: string, field: string): void {
  if (Buffer.byteLength(id) > MAX_ID_BYTES) {
    throw new InvalidInputError(`${field} is longer than ${MAX_ID_BYTES} bytes`, field);
  }
}

interface RecordedOpHit {
  readonly id: string;
  readonly recorded: RecordedOp;
}

const embeddingSourceSchema = z.object({ embedding: z.array(z.number()) });

/** Code-point order, as Elasticsearch sorts keywords. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkNearest(request: NearestRequest, i: number): void {
  checkUserScope(request.scope);
  checkLimit(request.k);
  checkVector(request.vector, `requests[${i}].vector`);
  if (typeof request.embedderId !== 'string' || request.embedderId === '') {
    throw new InvalidInputError('embedderId is required', `requests[${i}].embedderId`);
  }
  const most = request.occurredAtMost;
  if (most !== undefined && (typeof most !== 'number' || !Number.isFinite(most))) {
    throw new InvalidInputError('occurredAtMost must be a finite epoch ms', `requests[${i}].occurredAtMost`);
  }
}

/** occurredAt <= most (inclusive; floored, as occurredAt is an integer). */
function occurredAtMost(most: number | undefined): Query[] {
  return most === undefined ? [] : [{ range: { occurredAt: { lte: Math.floor(most) } } }];
}
