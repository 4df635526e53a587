import type Database from 'better-sqlite3';
import { z } from 'zod';
import { InvalidInputError, LightmemError } from '../../core/errors.js';
import { MemoryKindValues, type MemoryEntry } from '../../core/model/generated.js';
import { assertId, assertScope, type Scope } from '../../core/model/scope.js';
import { systemClock, type Clock } from '../../core/ports/clock.js';
import type {
  ListRequest,
  MemoryStore,
  MemoryWrite,
  SearchHit,
  SearchRequest,
  StoreStats,
  TimeRange,
  UpsertResult,
} from '../../core/ports/memory-store.js';
import { migrate, openDatabase, type SqliteDatabase } from './database.js';
import { buildMatchExpression, entryScopeColumn } from './fts-query.js';
import { DEFAULT_FUSION, fuse, normaliseWeights, type FusionWeights } from './memory-fusion.js';
import {
  MEMORY_MIGRATIONS,
  type MemoryRow,
  contentHash,
  entryParams,
  parseMemoryRow,
  rowToEntry,
  vectorBlob,
  vectorTableSql,
} from './memory-schema.js';

type Statement = Database.Statement;

export interface SqliteMemoryStoreOptions {
  /** Weights of the lexical (BM25) and semantic (cosine) parts of the fused score; scaled to sum to 1. */
  readonly fusion?: FusionWeights | undefined;
  /** "Now" for validity checks (validTo in the future is still live). */
  readonly clock?: Clock | undefined;
}

/** Largest `limit` of one search or list page. */
export const MAX_LIMIT = 1_000;
/** sqlite-vec refuses k above 4096. */
const MAX_KNN = 4_096;
/** BM25 column weights: text, speaker (a name in the query helps, but less than the text), scope (never scored). */
const BM25 = 'bm25(memories_fts, 1.0, 0.4, 0.0)';
const LIVE_SQL = 'm.superseded_by IS NULL AND (m.valid_to IS NULL OR m.valid_to > ?)';

interface StoredEmbedder {
  readonly id: string;
  readonly dims: number;
}

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
const cursorSchema = z.tuple([z.number().int(), z.string()]);

/**
 * The embedded MemoryStore: SQLite with FTS5 (BM25) for lexical and sqlite-vec (vec0 KNN) for semantic
 * retrieval, fused linearly. better-sqlite3 is synchronous, so each method does its work before resolving;
 * writes of one call run in one IMMEDIATE transaction (taking the write lock up front, so a second process
 * waits on busy_timeout instead of failing half-way).
 *
 * Tenancy: every statement filters on tenant_id (and on each other scope field the caller gives). The FTS
 * MATCH also carries the scope as hashed tokens and the vector KNN runs inside the tenant's partition, so
 * another tenant's rows are never even ranked; the SQL filter on the joined row re-checks all of it.
 */
export class SqliteMemoryStore implements MemoryStore {
  private readonly statements = new Map<string, Statement>();
  private readonly weights: FusionWeights;
  private readonly clock: Clock;
  private closed = false;

  private constructor(
    private readonly db: SqliteDatabase,
    options: SqliteMemoryStoreOptions,
  ) {
    this.weights = normaliseWeights(options.fusion ?? DEFAULT_FUSION);
    this.clock = options.clock ?? systemClock;
  }

  static open(file: string, options: SqliteMemoryStoreOptions = {}): SqliteMemoryStore {
    const db = openDatabase(file, { vectors: true });
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

  async upsert(writes: readonly MemoryWrite[]): Promise<UpsertResult> {
    this.ensureOpen();
    writes.forEach((write, index) => validateWrite(write, index));
    if (writes.length === 0) return { inserted: 0, updated: 0, unchanged: 0 };
    return this.db.transaction(() => this.upsertInTransaction(writes)).immediate();
  }

  private upsertInTransaction(writes: readonly MemoryWrite[]): UpsertResult {
    let inserted = 0;
    let updated = 0;
    let unchanged = 0;
    let embedder = this.storedEmbedder();
    for (const { entry, embedding } of writes) {
      if (embedding !== undefined || entry.pipeline.embedder !== null) {
        embedder = this.checkEmbedder(embedder, entry, embedding);
      }
      const hash = contentHash(entry, embedding);
      const existing = this.stmt(
        'select-existing',
        () =>
          'SELECT rid, tenant_id, user_id, valid_to, superseded_by, content_hash FROM memories WHERE id = ?',
      ).get(entry.id);
      let rid: number;
      let validTo = entry.validTo;
      let supersededBy = entry.supersededBy;
      if (existing === undefined) {
        const row = this.stmt('insert', () => INSERT_SQL).get(
          entryParams(entry, validTo, supersededBy, hash),
        );
        rid = ridSchema.parse(row).rid;
        inserted++;
      } else {
        const old = existingSchema.parse(existing);
        if (old.tenant_id !== entry.tenantId || old.user_id !== entry.userId) {
          // Ids are derived from the scope, so this is a bug or an attack; never move a memory across scopes.
          throw new LightmemError('conflict', `memory ${entry.id} already exists in another scope`, {
            field: 'entry.id',
          });
        }
        if (old.content_hash === hash) {
          unchanged++;
          continue;
        }
        // A supersession recorded by supersede() is sticky: re-writing the original entry (a replay, a
        // re-extraction) must not bring a replaced memory back to life. Only an explicit supersededBy wins.
        if (old.superseded_by !== null && supersededBy === null) {
          validTo = old.valid_to;
          supersededBy = old.superseded_by;
        }
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
      ).run(rid, entry.sourceText ?? entry.text, entry.speaker, entryScopeColumn(entry));
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
    const claimed = entry.pipeline.embedder;
    if (stored !== null && claimed !== null && claimed !== stored.id) {
      throw new LightmemError(
        'model_mismatch',
        `memory ${entry.id} was embedded by ${claimed} but this store holds vectors of ${stored.id}`,
        { field: 'entry.pipeline.embedder' },
      );
    }
    if (embedding === undefined) return stored;
    if (claimed === null) {
      throw new InvalidInputError(
        `memory ${entry.id} has an embedding but no pipeline.embedder`,
        'entry.pipeline.embedder',
      );
    }
    if (stored === null) {
      this.db.exec(vectorTableSql(embedding.length));
      const setMeta = this.stmt('meta-set', () => 'INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
      setMeta.run('embedder_id', claimed);
      setMeta.run('embedder_dims', String(embedding.length));
      return { id: claimed, dims: embedding.length };
    }
    if (embedding.length !== stored.dims) {
      throw new LightmemError(
        'model_mismatch',
        `memory ${entry.id} has a ${embedding.length}-dimension embedding; this store holds ${stored.dims}`,
        { field: 'embedding' },
      );
    }
    return stored;
  }

  async supersede(scope: Scope, ids: readonly string[], by: string, at: number): Promise<number> {
    this.ensureOpen();
    assertScope(scope);
    assertId(by, 'by');
    ids.forEach((id, i) => assertId(id, `ids[${i}]`));
    if (!Number.isSafeInteger(at)) throw new InvalidInputError('at must be an integer epoch ms', 'at');
    const filter = scopeFilter(scope);
    // Only live rows change (a memory keeps the first replacement it got), and never the replacement itself.
    const statement = this.stmt(
      `supersede:${filter.key}`,
      () =>
        `UPDATE memories AS m SET valid_to = ?, superseded_by = ?
       WHERE m.id = ? AND m.id <> ? AND m.superseded_by IS NULL AND ${filter.sql} RETURNING rid`,
    );
    return this.db
      .transaction(() => {
        const hasVectors = this.storedEmbedder() !== null;
        let changed = 0;
        for (const id of new Set(ids)) {
          const row = statement.get(at, by, id, by, ...filter.params);
          if (row === undefined) continue;
          changed++;
          const { rid } = ridSchema.parse(row);
          if (hasVectors) this.vectorStmt('mark-superseded').run(BigInt(rid));
        }
        return changed;
      })
      .immediate();
  }

  /**
   * Erasure needs a data subject: a userId or a conversationId (agentId / sessionId may narrow it further).
   * A bare `{ tenantId }` is refused with `scope_required` rather than wiping the tenant, because a caller
   * that forgot the userId must not erase everyone; tenant off-boarding is the explicit eraseTenant().
   */
  async erase(scope: Scope): Promise<string[]> {
    this.ensureOpen();
    assertScope(scope);
    if (scope.userId === undefined && scope.conversationId === undefined) {
      throw new LightmemError(
        'scope_required',
        'erase needs a userId or a conversationId besides the tenantId',
        {
          field: 'scope.userId',
        },
      );
    }
    return this.eraseWhere(scope);
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
    const erased = this.db
      .transaction(() => {
        const hasVectors = this.storedEmbedder() !== null;
        const rows = select.all(...filter.params).map((row) => ridIdSchema.parse(row));
        for (const { rid } of rows) {
          this.stmt('fts-delete', () => 'DELETE FROM memories_fts WHERE rowid = ?').run(rid);
          if (hasVectors) this.vectorStmt('delete').run(BigInt(rid));
          this.stmt('delete', () => 'DELETE FROM memories WHERE rid = ?').run(rid);
        }
        return rows.map((row) => row.id);
      })
      .immediate();
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
    }
    return erased;
  }

  // ---------------------------------------------------------------- reads

  async search(request: SearchRequest): Promise<SearchHit[]> {
    this.ensureOpen();
    const scope = assertScope(request.scope);
    const limit = checkLimit(request.limit);
    if (typeof request.text !== 'string') throw new InvalidInputError('text must be a string', 'text');
    const range = checkTimeRange(request.timeRange);
    const live = request.includeSuperseded !== true;
    const now = this.clock.now();

    const stored = this.storedEmbedder();
    if (stored !== null && request.embedderId !== undefined && request.embedderId !== stored.id) {
      throw new LightmemError(
        'model_mismatch',
        `query embedded by ${request.embedderId} but this store holds vectors of ${stored.id}`,
        { field: 'embedderId' },
      );
    }
    const vector = request.vector;
    if (vector !== undefined) checkVector(vector, 'vector');
    if (stored !== null && vector !== undefined && vector.length !== stored.dims) {
      throw new LightmemError(
        'model_mismatch',
        `query vector has ${vector.length} dimensions; this store holds ${stored.dims}`,
        { field: 'vector' },
      );
    }
    // No stored vectors yet: the query vector has nothing to compare with, so the search is lexical only.
    const queryVector = stored === null ? undefined : vector;
    const semanticActive = queryVector !== undefined;
    const filter = memoryFilter(scope, range, live ? now : null);

    // Candidates carry only keys and scores (every match passes through the ORDER BY sorter, so no text);
    // full rows are loaded for the hits that are returned.
    const lexical: { key: number; id: string; occurredAt: number; item: number; bm25: number }[] = [];
    const match = buildMatchExpression(request.text, scope);
    if (match !== null) {
      // CROSS JOIN pins the join order: FTS first, then a rowid lookup per hit. With a plain JOIN the
      // planner may walk the user's rows in the scope index and re-run the MATCH for each (~50x slower).
      const statement = this.stmt(
        `lexical:${filter.key}`,
        () =>
          `SELECT m.rid, m.id, m.occurred_at, ${BM25} AS bm FROM memories_fts CROSS JOIN memories m ON m.rid = memories_fts.rowid
           WHERE memories_fts MATCH ? AND ${filter.sql} ORDER BY bm LIMIT ?`,
      );
      for (const row of statement.all(match, ...filter.params, Math.max(limit * 4, 50))) {
        const c = lexicalCandidate.parse(row);
        lexical.push({ key: c.rid, id: c.id, occurredAt: c.occurred_at, item: c.rid, bm25: c.bm });
      }
    }

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
      const k = Math.min(Math.max(limit * 8, 100), MAX_KNN);
      for (const row of statement.all(vectorBlob(queryVector), k, ...knn.params, ...filter.params)) {
        const c = semanticCandidate.parse(row);
        if (c.distance === null) continue;
        semantic.push({ key: c.rid, id: c.id, occurredAt: c.occurred_at, item: c.rid, distance: c.distance });
      }
    }

    const fused = fuse(lexical, semantic, this.weights, semanticActive, limit);
    const rows = this.loadRows(
      scope.tenantId,
      fused.map((hit) => hit.item),
    );
    return fused.flatMap((hit) => {
      const row = rows.get(hit.item);
      if (row === undefined) return []; // cannot happen inside one synchronous call; never invent a hit
      return [{ memory: rowToEntry(row), score: hit.score, lexical: hit.lexical, semantic: hit.semantic }];
    });
  }

  /** Full rows by rid, still confined to the tenant. */
  private loadRows(tenantId: string, rids: readonly number[]): Map<number, MemoryRow> {
    const rows = new Map<number, MemoryRow>();
    if (rids.length === 0) return rows;
    const statement = this.stmt(
      'load-rows',
      () => 'SELECT m.* FROM memories m WHERE m.rid IN (SELECT value FROM json_each(?)) AND m.tenant_id = ?',
    );
    for (const raw of statement.all(JSON.stringify(rids), tenantId)) {
      const row = parseMemoryRow(raw);
      rows.set(row.rid, row);
    }
    return rows;
  }

  /** Any memory of the scope by id, live or not (history stays readable). */
  async get(scope: Scope, id: string): Promise<MemoryEntry | undefined> {
    this.ensureOpen();
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
    const scope = assertScope(request.scope);
    const limit = checkLimit(request.limit);
    const after = request.cursor === undefined ? null : decodeCursor(request.cursor);
    const live = request.includeSuperseded !== true;
    const filter = memoryFilter(scope, {}, live ? this.clock.now() : null);
    const keyset = after === null ? '' : 'AND (m.occurred_at > ? OR (m.occurred_at = ? AND m.id > ?))';
    const statement = this.stmt(
      `list:${filter.key}:${after === null ? 0 : 1}`,
      () => `SELECT m.* FROM memories m WHERE ${filter.sql} ${keyset} ORDER BY m.occurred_at, m.id LIMIT ?`,
    );
    const params = after === null ? [] : [after[0], after[0], after[1]];
    const rows = statement.all(...filter.params, ...params, limit + 1);
    const items = rows.slice(0, limit).map((row) => rowToEntry(parseMemoryRow(row)));
    const last = items[items.length - 1];
    const nextCursor =
      rows.length > limit && last !== undefined ? encodeCursor(last.occurredAt, last.id) : null;
    return { items, nextCursor };
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

interface Range {
  readonly from?: number;
  readonly to?: number;
}

/** Scope, time range (from inclusive, to exclusive) and, when `liveAt` is given, validity at that time. */
function memoryFilter(scope: Scope, range: Range, liveAt: number | null): Filter {
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
  const key = `${base.key}${range.from === undefined ? 0 : 1}${range.to === undefined ? 0 : 1}${liveAt === null ? 0 : 1}`;
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

function checkLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new InvalidInputError(`limit must be an integer from 1 to ${MAX_LIMIT}`, 'limit');
  }
  return limit;
}

/**
 * Occurrence times are integers, so rounding bounds up keeps `>= from` and `< to` exact; clamping keeps
 * them bindable as 64-bit integers.
 */
function checkTimeRange(range: TimeRange | undefined): Range {
  const out: { from?: number; to?: number } = {};
  for (const side of ['from', 'to'] as const) {
    const value = range?.[side];
    if (value === undefined) continue;
    if (!Number.isFinite(value))
      throw new InvalidInputError(`timeRange.${side} must be a finite number`, `timeRange.${side}`);
    out[side] = Math.min(Math.max(Math.ceil(value), -Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  }
  return out;
}

function checkVector(vector: unknown, field: string): void {
  if (!(vector instanceof Float32Array) || vector.length === 0) {
    throw new InvalidInputError(`${field} must be a non-empty Float32Array`, field);
  }
  for (const value of vector) {
    if (!Number.isFinite(value)) throw new InvalidInputError(`${field} has a non-finite value`, field);
  }
}

/** Entries usually come typed from the pipeline, but the store is a trust boundary: check what SQL relies on. */
function validateWrite(write: MemoryWrite, index: number): void {
  const { entry, embedding } = write;
  const at = (field: string): string => `writes[${index}].entry.${field}`;
  assertId(entry.id, at('id'));
  for (const field of ['tenantId', 'userId', 'conversationId', 'sessionId'] as const) {
    assertId(entry[field], at(field));
  }
  if (entry.agentId !== null) assertId(entry.agentId, at('agentId'));
  // Typed as MemoryKind, but an untyped caller may pass anything: print it safely.
  if (!MemoryKindValues.includes(entry.kind)) {
    throw new InvalidInputError(`unknown kind ${JSON.stringify(entry.kind)}`, at('kind'));
  }
  for (const field of ['text', 'speaker', 'topicId', 'zoneOffset'] as const) {
    if (typeof entry[field] !== 'string') throw new InvalidInputError(`${field} must be a string`, at(field));
  }
  for (const field of ['occurredAt', 'ingestedAt', 'validFrom'] as const) {
    if (!Number.isSafeInteger(entry[field]))
      throw new InvalidInputError(`${field} must be an integer epoch ms`, at(field));
  }
  if (entry.validTo !== null && !Number.isSafeInteger(entry.validTo)) {
    throw new InvalidInputError('validTo must be null or an integer epoch ms', at('validTo'));
  }
  if (entry.supersededBy !== null) assertId(entry.supersededBy, at('supersededBy'));
  if (!Array.isArray(entry.sourceTurnIds) || !entry.sourceTurnIds.every((id) => typeof id === 'string')) {
    throw new InvalidInputError('sourceTurnIds must be an array of strings', at('sourceTurnIds'));
  }
  if (typeof entry.pipeline !== 'object' || entry.pipeline === null) {
    throw new InvalidInputError('pipeline is required', at('pipeline'));
  }
  if (embedding !== undefined) checkVector(embedding, `writes[${index}].embedding`);
}

function encodeCursor(occurredAt: number, id: string): string {
  return Buffer.from(JSON.stringify([occurredAt, id])).toString('base64url');
}

function decodeCursor(cursor: string): [number, string] {
  try {
    return cursorSchema.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
  } catch (error) {
    throw new InvalidInputError('invalid cursor', 'cursor', error);
  }
}
