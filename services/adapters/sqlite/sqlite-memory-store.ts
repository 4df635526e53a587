import { searchText } from '../../core/text/embedding-text.js';
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';
import { assertId, assertScope, type Scope } from '../../core/model/scope.js';
import { systemClock, type Clock } from '../../core/ports/clock.js';
import type {
  WriteOptions,
  ApplyResult,
  ListRequest,
  MemoryHistory,
  MemoryStore,
  NearestRequest,
  Neighbour,
  OpWrite,
  PendingUser,
  MemoryWrite,
  SearchHit,
  SearchRequest,
  StoreStats,
  UpsertResult,
} from '../../core/ports/memory-store.js';
import { contentHash, vectorBlob } from '../memory/content-hash.js';
import { checkWriteEmbedder, type StoredEmbedder } from '../memory/embedder-check.js';
import {
  DEFAULT_FUSION,
  fuse,
  normaliseWeights,
  toSearchHits,
  type FusionWeights,
} from '../memory/memory-fusion.js';
import {
  checkErasureScope,
  checkSupersede,
  listPage,
  planList,
  validateWrite,
  type Range,
} from '../memory/request-checks.js';
import { planSearch } from '../memory/search-plan.js';
import { planUpsert } from '../memory/upsert-plan.js';
import {
  checkpointAfterErasure,
  migrate,
  openDatabase,
  writeTransaction,
  type SqliteDatabase,
} from './database.js';
import { buildMatchExpression, entryScopeColumn } from './fts-query.js';
import {
  MEMORY_MIGRATIONS,
  type MemoryRow,
  entryParams,
  parseMemoryRow,
  rowToEntry,
  vectorTableSql,
} from './memory-schema.js';
import { SqliteMemoryVersions } from './sqlite-memory-versions.js';
import { ErasedUsers } from './erased-users.js';
import { inSpan, storeWriteSpan } from '../../telemetry/trace-context.js';

type Statement = Database.Statement;

export interface SqliteMemoryStoreOptions {
  /** Weights of the lexical (BM25) and semantic (cosine) parts of the fused score; scaled to sum to 1. */
  readonly fusion?: FusionWeights | undefined;
  /** "Now" for validity checks (validTo in the future is still live). */
  readonly clock?: Clock | undefined;
  /** How long a write waits for another process's write lock before it fails (retryable). */
  readonly busyTimeoutMs?: number | undefined;
}

/** BM25 column weights: text, speaker (a name in the query helps, but less than the text), scope (never scored). */
const BM25 = 'bm25(memories_fts, 1.0, 0.4, 0.0)';
const LIVE_SQL = 'm.superseded_by IS NULL AND (m.valid_to IS NULL OR m.valid_to > ?)';

interface Filter {
  /** Which optional clauses are present: the cache key of the statement built from it. */
  readonly key: string;
  readonly sql: string;
  readonly params: readonly unknown[];
}

const lexicalCandidate = z.object({
  rid: z.number().int(),
  id: z.string(),
  occurred_at: z.number().int(),
  bm: z.number(),
});
const rankedSchema = z.object({ rid: z.number().int(), bm: z.number() });
interface LexicalCandidate {
  readonly key: number;
  readonly id: string;
  readonly occurredAt: number;
  readonly item: number;
  readonly bm25: number;
}
/** Past this many ranked FTS matches, the lexical side ranks every match of the filter in one join. */
const MAX_RANKED_FIRST = 20_000;
/** How much of the store file search reads through a memory map (see OpenOptions.mmapBytes). */
const MMAP_BYTES = 1 << 30;
const semanticCandidate = z.object({
  rid: z.number().int(),
  id: z.string(),
  occurred_at: z.number().int(),
  // sqlite-vec reports a null distance for a zero query vector: such a hit has no similarity.
  distance: z.number().nullable(),
});
const existingSchema = z.object({
  rid: z.number().int(),
  tenant_id: z.string(),
  user_id: z.string(),
  valid_to: z.number().int().nullable(),
  superseded_by: z.string().nullable(),
  content_hash: z.string(),
});
const ridSchema = z.object({ rid: z.number().int() });
const ridIdSchema = z.object({ rid: z.number().int(), id: z.string() });
const statsSchema = z.object({ total: z.number().int(), live: z.number().int().nullable() });
const metaSchema = z.object({ key: z.string(), value: z.string() });

/**
 * The embedded MemoryStore: SQLite with FTS5 (BM25) for lexical and sqlite-vec (vec0 KNN) for semantic
 * retrieval, fused linearly. better-sqlite3 is synchronous, so each method does its work before resolving;
 * writes of one call run in one IMMEDIATE transaction (`writeTransaction`: the write lock is taken up front,
 * so a second process waits on busy_timeout instead of failing half-way, then gets a retryable error).
 *
 * Tenancy: every statement filters on tenant_id (and on each other scope field the caller gives). The FTS
 * MATCH also carries the scope as hashed tokens and the vector KNN runs inside the tenant's partition (and
 * the user's, when the scope names one), so another tenant's rows are never even ranked; the SQL filter on
 * the joined row re-checks all of it.
 *
 * Cost: a search reads what its scope holds, not what the tenant holds. FTS ranks inside the scope before
 * any `memories` row is read, KNN scans the user's vec0 partition, and the ~30 winners' rows are loaded by
 * rowid. Both sides are exact: a scope of N memories costs O(N) (BM25 over the matches, KNN over the
 * vectors).
 */
export class SqliteMemoryStore implements MemoryStore {
  private readonly statements = new Map<string, Statement>();
  private readonly weights: FusionWeights;
  private readonly clock: Clock;
  private readonly versions: SqliteMemoryVersions;
  private readonly erasedUsers: ErasedUsers;
  private closed = false;

  private constructor(
    private readonly db: SqliteDatabase,
    options: SqliteMemoryStoreOptions,
  ) {
    this.weights = normaliseWeights(options.fusion ?? DEFAULT_FUSION);
    this.clock = options.clock ?? systemClock;
    this.erasedUsers = new ErasedUsers(db);
    this.versions = new SqliteMemoryVersions({
      erasedUsers: () => this.erasedUsers.lookup(),
      db,
      stmt: (key, build) => this.stmt(key, build),
      now: () => this.clock.now(),
      storedEmbedder: () => this.storedEmbedder(),
      upsertInTransaction: (writes, consolidatedAt) => {
        this.upsertInTransaction(writes, consolidatedAt);
      },
      markVectorSuperseded: (rid) => {
        if (this.storedEmbedder() !== null) this.vectorStmt('mark-superseded').run(BigInt(rid));
      },
    });
  }

  static open(file: string, options: SqliteMemoryStoreOptions = {}): SqliteMemoryStore {
    const db = openDatabase(file, {
      vectors: true,
      mmapBytes: MMAP_BYTES,
      ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
    });
    try {
      // Erasure must not leave deleted text readable in free pages of the file.
      db.pragma('secure_delete = ON');
      migrate(db, MEMORY_MIGRATIONS);
      return new SqliteMemoryStore(db, options);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  // ---------------------------------------------------------------- writes

  async upsert(writes: readonly MemoryWrite[], options: WriteOptions = {}): Promise<UpsertResult> {
    this.ensureOpen();
    writes.forEach((write, index) => validateWrite(write, index));
    if (writes.length === 0) return { inserted: 0, updated: 0, unchanged: 0 };
    const span = storeWriteSpan('sqlite', writes.length, options.traceContext);
    return inSpan('memory store upsert', span, async () =>
      writeTransaction(this.db, 'writing memories', () => this.upsertInTransaction(writes)),
    );
  }

  /** `consolidatedAt`: what new rows get (null: pending consolidation; versions made by ops are not). */
  private upsertInTransaction(
    writes: readonly MemoryWrite[],
    consolidatedAt: number | null = null,
  ): UpsertResult {
    let inserted = 0;
    let updated = 0;
    let unchanged = 0;
    let embedder = this.storedEmbedder();
    const erasedAt = this.erasedUsers.lookup();
    for (const { entry, embedding } of writes) {
      const erased = erasedAt(entry.tenantId, entry.userId);
      if (erased !== null && entry.ingestedAt <= erased) {
        // Extracted before its user was erased (an indexer batch in flight then): it stays erased.
        unchanged++;
        continue;
      }
      if (embedding !== undefined || entry.pipeline.embedder !== null) {
        embedder = this.checkEmbedder(embedder, entry, embedding);
      }
      const hash = contentHash(entry, embedding);
      const existing = this.stmt(
        'select-existing',
        () =>
          'SELECT rid, tenant_id, user_id, valid_to, superseded_by, content_hash FROM memories WHERE id = ?',
      ).get(entry.id);
      const old = existing === undefined ? undefined : existingSchema.parse(existing);
      const decision = planUpsert(
        entry,
        hash,
        old && {
          tenantId: old.tenant_id,
          userId: old.user_id,
          contentHash: old.content_hash,
          validTo: old.valid_to,
          supersededBy: old.superseded_by,
        },
      );
      if (decision.action === 'unchanged') {
        unchanged++;
        continue;
      }
      const { validTo, supersededBy } = decision;
      let rid: number;
      if (old === undefined) {
        const row = this.stmt('insert', () => INSERT_SQL).get(
          entryParams(entry, validTo, supersededBy, hash),
        );
        rid = ridSchema.parse(row).rid;
        if (consolidatedAt !== null) {
          this.stmt('set-consolidated', () => 'UPDATE memories SET consolidated_at = ? WHERE rid = ?').run(
            consolidatedAt,
            rid,
          );
        }
        inserted++;
      } else {
        rid = old.rid;
        this.stmt('update', () => UPDATE_SQL).run({
          ...entryParams(entry, validTo, supersededBy, hash),
          rid,
        });
        this.stmt('fts-delete', () => 'DELETE FROM memories_fts WHERE rowid = ?').run(rid);
        if (embedder !== null) this.vectorStmt('delete').run(BigInt(rid));
        updated++;
      }
      this.stmt(
        'fts-insert',
        () => 'INSERT INTO memories_fts (rowid, text, speaker, scope) VALUES (?, ?, ?, ?)',
      ).run(rid, searchText(entry), entry.speaker, entryScopeColumn(entry));
      if (embedding !== undefined) {
        this.vectorStmt('insert').run(
          BigInt(rid),
          entry.tenantId,
          entry.userId,
          entry.agentId ?? '', // vec0 metadata columns cannot hold NULL; ids are never empty
          entry.conversationId,
          entry.sessionId,
          BigInt(entry.occurredAt),
          supersededBy === null ? 0n : 1n,
          vectorBlob(embedding),
        );
      }
    }
    return { inserted, updated, unchanged };
  }

  /**
   * One store, one embedder: vectors of different models are not comparable. The first embedding written
   * fixes the embedder (and creates the vector table with its dimension); later writes must match it.
   */
  private checkEmbedder(
    stored: StoredEmbedder | null,
    entry: MemoryEntry,
    embedding: Float32Array | undefined,
  ): StoredEmbedder | null {
    const next = checkWriteEmbedder(stored, entry, embedding);
    if (stored === null && next !== null) {
      this.db.exec(vectorTableSql(next.dims));
      const setMeta = this.stmt('meta-set', () => 'INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
      setMeta.run('embedder_id', next.id);
      setMeta.run('embedder_dims', String(next.dims));
    }
    return next;
  }

  async supersede(scope: Scope, ids: readonly string[], by: string, at: number): Promise<number> {
    this.ensureOpen();
    const targets = checkSupersede(scope, ids, by, at);
    const filter = scopeFilter(scope);
    // Only live rows change (a memory keeps the first replacement it got), and never the replacement itself.
    const statement = this.stmt(
      `supersede:${filter.key}`,
      () =>
        `UPDATE memories AS m SET valid_to = ?, superseded_by = ?
       WHERE m.id = ? AND m.superseded_by IS NULL AND ${filter.sql} RETURNING rid`,
    );
    return writeTransaction(this.db, 'superseding memories', () => {
      const hasVectors = this.storedEmbedder() !== null;
      let changed = 0;
      for (const id of targets) {
        const row = statement.get(at, by, id, ...filter.params);
        if (row === undefined) continue;
        changed++;
        const { rid } = ridSchema.parse(row);
        if (hasVectors) this.vectorStmt('mark-superseded').run(BigInt(rid));
      }
      return changed;
    });
  }

  /**
   * Erases a data subject (a user or a conversation; see checkErasureScope): every version of its memories
   * with their FTS and vector rows (pending consolidation is a column of those rows, so it goes with them),
   * and the recorded ops of the user or linked to the erased memories (their replacements hold memory
   * text; their links go with them). Erasing a whole user also records the erasure: from then on, writes
   * of that user's memories extracted before it (ingestedAt) and ops decided before it are refused.
   */
  async erase(scope: Scope): Promise<string[]> {
    this.ensureOpen();
    return this.eraseWhere(checkErasureScope(scope));
  }

  /** Deletes every memory of a tenant (off-boarding). Not part of the MemoryStore port on purpose. */
  async eraseTenant(tenantId: string): Promise<string[]> {
    this.ensureOpen();
    assertId(tenantId, 'tenantId');
    return this.eraseWhere({ tenantId });
  }

  private eraseWhere(scope: Scope): string[] {
    const filter = scopeFilter(scope);
    const select = this.stmt(
      `erase-select:${filter.key}`,
      () => `SELECT m.rid, m.id FROM memories m WHERE ${filter.sql}`,
    );
    // The user whose whole data this erases (not one agent, conversation or session of theirs).
    const wholeUser =
      scope.agentId === undefined && scope.conversationId === undefined && scope.sessionId === undefined
        ? scope.userId
        : undefined;
    const erased = writeTransaction(this.db, 'erasing memories', () => {
      if (wholeUser !== undefined) this.erasedUsers.record(scope.tenantId, wholeUser, this.clock.now());
      const hasVectors = this.storedEmbedder() !== null;
      const rows = select.all(...filter.params).map((row) => ridIdSchema.parse(row));
      const linkedOps = this.stmt(
        'erase-linked-ops',
        () =>
          'DELETE FROM memory_ops WHERE seq IN (SELECT op_seq FROM memory_op_links WHERE tenant_id = ? AND memory_id = ?)',
      );
      for (const { rid, id } of rows) {
        this.stmt('fts-delete', () => 'DELETE FROM memories_fts WHERE rowid = ?').run(rid);
        if (hasVectors) this.vectorStmt('delete').run(BigInt(rid));
        this.stmt('delete', () => 'DELETE FROM memories WHERE rid = ?').run(rid);
        linkedOps.run(scope.tenantId, id);
      }
      // Recorded decisions carry the text of the versions they wrote: they go with the user (or tenant).
      if (scope.conversationId === undefined) {
        const opFilter = scope.userId === undefined ? '' : ' AND user_id = ?';
        this.stmt(
          `erase-ops:${opFilter === '' ? 0 : 1}`,
          () => `DELETE FROM memory_ops WHERE tenant_id = ?${opFilter}`,
        ).run(scope.tenantId, ...(scope.userId === undefined ? [] : [scope.userId]));
      }
      return rows.map((row) => row.id);
    });
    // contentless_delete only tombstones FTS rows: the erased words stay in the index segments until they
    // are merged. Rewriting the index drops them for good. It is proportional to the index size, but
    // erasure is rare, and it runs after the commit so the deletion itself stays short and atomic.
    if (erased.length > 0) {
      try {
        this.db.exec(`INSERT INTO memories_fts (memories_fts) VALUES ('optimize')`);
      } catch {
        // The erasure is committed and tombstoned rows never match; automerge drops the words later. Failing
        // here would report a completed erasure as failed (and a retry would return no ids).
      }
      checkpointAfterErasure(this.db);
    }
    return erased;
  }

  // ---------------------------------------------------------------- reads

  async search(request: SearchRequest): Promise<SearchHit[]> {
    this.ensureOpen();
    const plan = planSearch(request, this.storedEmbedder());
    const { scope, limit, range, live, queryVector } = plan;
    const filter = memoryFilter(scope, range, live ? this.clock.now() : null, plan.asOf);

    // Candidates carry only keys and scores (every match passes through the ORDER BY sorter, so no text);
    // full rows are loaded for the hits that are returned.
    const match = buildMatchExpression(request.text, scope);
    const lexical = match === null ? [] : this.lexicalCandidates(match, filter, plan.lexicalCandidates);

    const semantic: { key: number; id: string; occurredAt: number; item: number; distance: number }[] = [];
    if (queryVector !== undefined) {
      const knn = knnFilter(scope, range, live);
      const statement = this.stmt(
        `semantic:${knn.key}:${filter.key}`,
        () =>
          `WITH knn AS (
             SELECT rowid AS rid, distance FROM memory_vectors WHERE embedding MATCH ? AND k = ? AND ${knn.sql}
           )
           SELECT m.rid, m.id, m.occurred_at, knn.distance AS distance
           FROM knn CROSS JOIN memories m ON m.rid = knn.rid WHERE ${filter.sql}`,
      );
      const k = plan.semanticCandidates;
      for (const row of statement.all(vectorBlob(queryVector), k, ...knn.params, ...filter.params)) {
        const c = semanticCandidate.parse(row);
        if (c.distance === null) continue;
        semantic.push({ key: c.rid, id: c.id, occurredAt: c.occurred_at, item: c.rid, distance: c.distance });
      }
    }

    const fused = fuse(lexical, semantic, this.weights, plan.semanticActive, limit);
    const rows = this.loadRows(
      scope.tenantId,
      fused.map((hit) => hit.item),
    );
    // A row cannot vanish inside one synchronous call; toSearchHits would drop it rather than invent a hit.
    return toSearchHits(fused, (rid) => {
      const row = rows.get(rid);
      return row === undefined ? undefined : rowToEntry(row);
    });
  }

  /**
   * The `wanted` best BM25 matches that pass `filter`, best first: what one query ranking every match of
   * the filter would return. FTS ranks first (its MATCH already holds the scope tokens), then only the best
   * `fetch` matches are looked up in `memories` and filtered (time range, validity), instead of joining
   * every match of the scope. When the filter drops so many that fewer than `wanted` are left while FTS
   * had more, the next `fetch` is larger; past MAX_RANKED_FIRST the plain join ranks them all.
   */
  private lexicalCandidates(match: string, filter: Filter, wanted: number): LexicalCandidate[] {
    const rank = this.stmt(
      'lexical-rank',
      () =>
        `SELECT rowid AS rid, ${BM25} AS bm FROM memories_fts WHERE memories_fts MATCH ? ORDER BY bm LIMIT ?`,
    );
    const keep = this.stmt(
      `lexical-keep:${filter.key}`,
      () =>
        `SELECT m.rid, m.id, m.occurred_at, 0 AS bm FROM json_each(?) AS j CROSS JOIN memories m ON m.rid = j.value
         WHERE ${filter.sql}`,
    );
    for (let fetch = wanted * 2; fetch <= MAX_RANKED_FIRST; fetch *= 4) {
      const ranked = rank.all(match, fetch).map((row) => rankedSchema.parse(row));
      const kept = new Map<number, z.infer<typeof lexicalCandidate>>();
      for (const row of keep.all(JSON.stringify(ranked.map((r) => r.rid)), ...filter.params)) {
        const c = lexicalCandidate.parse(row);
        kept.set(c.rid, c);
      }
      if (kept.size < wanted && ranked.length === fetch) continue;
      const out: LexicalCandidate[] = [];
      for (const { rid, bm } of ranked) {
        const c = kept.get(rid);
        if (c === undefined) continue;
        out.push({ key: rid, id: c.id, occurredAt: c.occurred_at, item: rid, bm25: bm });
        if (out.length === wanted) break;
      }
      return out;
    }
    // CROSS JOIN pins the join order: FTS first, then a rowid lookup per hit. With a plain JOIN the
    // planner may walk the user's rows in the scope index and re-run the MATCH for each (~50x slower).
    const statement = this.stmt(
      `lexical:${filter.key}`,
      () =>
        `SELECT m.rid, m.id, m.occurred_at, ${BM25} AS bm FROM memories_fts CROSS JOIN memories m ON m.rid = memories_fts.rowid
         WHERE memories_fts MATCH ? AND ${filter.sql} ORDER BY bm LIMIT ?`,
    );
    return statement.all(match, ...filter.params, wanted).map((row) => {
      const c = lexicalCandidate.parse(row);
      return { key: c.rid, id: c.id, occurredAt: c.occurred_at, item: c.rid, bm25: c.bm };
    });
  }

  /**
   * Full rows by rid, still confined to the tenant. Looked up by rowid (CROSS JOIN pins it): the planner
   * would otherwise walk the tenant's index for the tenant_id term.
   */
  private loadRows(tenantId: string, rids: readonly number[]): Map<number, MemoryRow> {
    const rows = new Map<number, MemoryRow>();
    if (rids.length === 0) return rows;
    const statement = this.stmt(
      'load-rows',
      () =>
        'SELECT m.* FROM json_each(?) AS j CROSS JOIN memories m ON m.rid = j.value WHERE m.tenant_id = ?',
    );
    for (const raw of statement.all(JSON.stringify(rids), tenantId)) {
      const row = parseMemoryRow(raw);
      rows.set(row.rid, row);
    }
    return rows;
  }

  // ---------------------------------------------------------------- versions and consolidation

  async applyOps(ops: readonly OpWrite[]): Promise<ApplyResult> {
    this.ensureOpen();
    return this.versions.applyOps(ops);
  }

  async recordedOps(tenantId: string, opIds: readonly string[]): Promise<Set<string>> {
    this.ensureOpen();
    return this.versions.recordedOps(tenantId, opIds);
  }

  async history(scope: Scope, id: string): Promise<MemoryHistory | undefined> {
    this.ensureOpen();
    return this.versions.history(scope, id, (versionId) => this.getSync(scope, versionId));
  }

  async nearest(requests: readonly NearestRequest[]): Promise<Neighbour[][]> {
    this.ensureOpen();
    return this.versions.nearest(requests, (tenantId, rids) => this.loadRows(tenantId, rids));
  }

  async embeddings(scope: Scope, ids: readonly string[]): Promise<Map<string, Float32Array>> {
    this.ensureOpen();
    ids.forEach((id, i) => assertId(id, `ids[${i}]`));
    return this.versions.embeddings(scope, ids, scopeFilter(assertScope(scope)));
  }

  async pendingConsolidation(scope: Scope, limit: number): Promise<MemoryEntry[]> {
    this.ensureOpen();
    return this.versions.pendingConsolidation(scope, limit);
  }

  async markConsolidated(scope: Scope, ids: readonly string[], at: number): Promise<number> {
    this.ensureOpen();
    return this.versions.markConsolidated(scope, ids, at);
  }

  async pendingUsers(tenantId?: string): Promise<PendingUser[]> {
    this.ensureOpen();
    return this.versions.pendingUsers(tenantId);
  }

  /** Any memory of the scope by id, live or not (history stays readable). */
  async get(scope: Scope, id: string): Promise<MemoryEntry | undefined> {
    this.ensureOpen();
    return this.getSync(scope, id);
  }

  private getSync(scope: Scope, id: string): MemoryEntry | undefined {
    assertScope(scope);
    assertId(id, 'id');
    const filter = scopeFilter(scope);
    const row = this.stmt(
      `get:${filter.key}`,
      () => `SELECT m.* FROM memories m WHERE m.id = ? AND ${filter.sql}`,
    ).get(id, ...filter.params);
    return row === undefined ? undefined : rowToEntry(parseMemoryRow(row));
  }

  /** Pages through a scope in (occurredAt, id) order; the cursor is the last key seen (keyset paging). */
  async list(request: ListRequest): Promise<{ items: MemoryEntry[]; nextCursor: string | null }> {
    this.ensureOpen();
    const { scope, limit, after, live } = planList(request);
    const filter = memoryFilter(scope, {}, live ? this.clock.now() : null);
    const keyset = after === null ? '' : 'AND (m.occurred_at > ? OR (m.occurred_at = ? AND m.id > ?))';
    const statement = this.stmt(
      `list:${filter.key}:${after === null ? 0 : 1}`,
      () => `SELECT m.* FROM memories m WHERE ${filter.sql} ${keyset} ORDER BY m.occurred_at, m.id LIMIT ?`,
    );
    const params = after === null ? [] : [after[0], after[0], after[1]];
    const rows = statement.all(...filter.params, ...params, limit + 1);
    return listPage(rows, limit, (row) => rowToEntry(parseMemoryRow(row)));
  }

  /** Counts in a scope, or in the whole store without one (operators). */
  async stats(scope?: Scope): Promise<StoreStats> {
    this.ensureOpen();
    const filter =
      scope === undefined ? { key: 'all', sql: '1', params: [] } : scopeFilter(assertScope(scope));
    const row = this.stmt(
      `stats:${filter.key}`,
      () =>
        `SELECT COUNT(*) AS total, SUM(CASE WHEN ${LIVE_SQL} THEN 1 ELSE 0 END) AS live
       FROM memories m WHERE ${filter.sql}`,
    ).get(this.clock.now(), ...filter.params);
    const { total, live } = statsSchema.parse(row);
    return {
      live: live ?? 0,
      superseded: total - (live ?? 0),
      embedderId: this.storedEmbedder()?.id ?? null,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.statements.clear();
    this.db.close();
  }

  // ---------------------------------------------------------------- helpers

  private ensureOpen(): void {
    if (this.closed) throw new LightmemError('storage_unavailable', 'memory store is closed');
  }

  /** Prepared once per distinct SQL shape and reused; `build` runs only on a cache miss. */
  private stmt(key: string, build: () => string): Statement {
    let statement = this.statements.get(key);
    if (statement === undefined) {
      statement = this.db.prepare(build());
      this.statements.set(key, statement);
    }
    return statement;
  }

  private vectorStmt(kind: 'insert' | 'delete' | 'mark-superseded'): Statement {
    return this.stmt(`vec-${kind}`, () => {
      switch (kind) {
        case 'insert':
          return `INSERT INTO memory_vectors (rowid, tenant_id, user_id, agent_id, conversation_id, session_id,
                  occurred_at, superseded, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;
        case 'delete':
          return 'DELETE FROM memory_vectors WHERE rowid = ?';
        case 'mark-superseded':
          return 'UPDATE memory_vectors SET superseded = 1 WHERE rowid = ?';
      }
    });
  }

  /**
   * Read from the database on every call (a few microseconds), not cached: another process writing the same
   * file may have created the vector table since we opened it.
   */
  private storedEmbedder(): StoredEmbedder | null {
    const rows = this.stmt('meta-get', () => `SELECT key, value FROM meta WHERE key LIKE 'embedder_%'`)
      .all()
      .map((row) => metaSchema.parse(row));
    const id = rows.find((row) => row.key === 'embedder_id')?.value;
    const dims = Number(rows.find((row) => row.key === 'embedder_dims')?.value);
    return id === undefined || !Number.isSafeInteger(dims) ? null : { id, dims };
  }
}

const COLUMNS = [
  'id',
  'tenant_id',
  'user_id',
  'agent_id',
  'conversation_id',
  'session_id',
  'text',
  'kind',
  'topic_id',
  'speaker',
  'occurred_at',
  'zone_offset',
  'ingested_at',
  'valid_from',
  'valid_to',
  'superseded_by',
  'source_turn_ids',
  'pipeline',
  'source_text',
  'content_hash',
] as const;
const INSERT_SQL = `INSERT INTO memories (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((c) => `@${c}`).join(', ')}) RETURNING rid`;
// ingested_at is left alone on update: the first ingest time is the one that counts (see contentHash).
const UPDATE_SQL = `UPDATE memories SET ${COLUMNS.filter((c) => c !== 'id' && c !== 'ingested_at')
  .map((c) => `${c} = @${c}`)
  .join(', ')} WHERE rid = @rid`;

const SCOPE_COLUMNS = [
  ['userId', 'user_id'],
  ['agentId', 'agent_id'],
  ['conversationId', 'conversation_id'],
  ['sessionId', 'session_id'],
] as const;

/** `m.tenant_id = ? AND …` for every scope field that is set. */
function scopeFilter(scope: Scope): Filter {
  const clauses = ['m.tenant_id = ?'];
  const params: unknown[] = [scope.tenantId];
  let key = 't';
  for (const [field, column] of SCOPE_COLUMNS) {
    const value = scope[field];
    key += value === undefined ? '0' : '1';
    if (value === undefined) continue;
    clauses.push(`m.${column} = ?`);
    params.push(value);
  }
  return { key, sql: clauses.join(' AND '), params };
}

/**
 * Scope, time range (from inclusive, to exclusive) and, when `liveAt` is given, current versions at that
 * time; when `asOf` is given, the versions valid at that event time (superseded since or not).
 */
function memoryFilter(scope: Scope, range: Range, liveAt: number | null, asOf: number | null = null): Filter {
  const base = scopeFilter(scope);
  const clauses = [base.sql];
  const params = [...base.params];
  if (range.from !== undefined) {
    clauses.push('m.occurred_at >= ?');
    params.push(range.from);
  }
  if (range.to !== undefined) {
    clauses.push('m.occurred_at < ?');
    params.push(range.to);
  }
  if (liveAt !== null) {
    clauses.push(LIVE_SQL);
    params.push(liveAt);
  }
  if (asOf !== null) {
    clauses.push('m.valid_from <= ? AND (m.valid_to IS NULL OR m.valid_to > ?)');
    params.push(asOf, asOf);
  }
  const key = `${base.key}${range.from === undefined ? 0 : 1}${range.to === undefined ? 0 : 1}${liveAt === null ? 0 : 1}${asOf === null ? 0 : 1}`;
  return { key, sql: clauses.join(' AND '), params };
}

/**
 * The same filter as vec0 KNN constraints (evaluated while scanning, so k counts only matching vectors).
 * vec0 integer columns need BigInt parameters: a JS number binds as REAL and is not compared correctly.
 * validTo is not a vector column (it depends on "now"); memoryFilter re-checks it on the joined row.
 */
function knnFilter(scope: Scope, range: Range, live: boolean): Filter {
  const clauses = ['tenant_id = ?'];
  const params: unknown[] = [scope.tenantId];
  for (const [field, column] of SCOPE_COLUMNS) {
    const value = scope[field];
    if (value === undefined) continue;
    clauses.push(`${column} = ?`);
    params.push(value);
  }
  if (range.from !== undefined) {
    clauses.push('occurred_at >= ?');
    params.push(BigInt(range.from));
  }
  if (range.to !== undefined) {
    clauses.push('occurred_at < ?');
    params.push(BigInt(range.to));
  }
  if (live) clauses.push('superseded = 0');
  return { key: `${live ? 1 : 0}`, sql: clauses.join(' AND '), params };
}
