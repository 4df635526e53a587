import type Database from 'better-sqlite3';
import { z } from 'zod';
import { InvalidInputError, LightmemError } from '../../core/errors.js';
import type { MemoryEntry, MemoryOp } from '../../core/model/generated.js';
import { assertId, assertScope, type Scope } from '../../core/model/scope.js';
import type {
  ApplyResult,
  MemoryHistory,
  MemoryWrite,
  Neighbour,
  NearestRequest,
  OpWrite,
  PendingUser,
  RecordedOp,
} from '../../core/ports/memory-store.js';
import type { StoredEmbedder } from '../memory/embedder-check.js';
import { checkLimit, checkUserScope, checkVector } from '../memory/request-checks.js';
import { opTouches, orderHistory, parseRecordedOp, planOp } from '../memory/op-plan.js';
import { vectorBlob } from '../memory/content-hash.js';
import { writeTransaction, type SqliteDatabase } from './database.js';
import { parseMemoryRow, rowToEntry, type MemoryRow } from './memory-schema.js';

type Statement = Database.Statement;

/** What the versions part needs of the store it belongs to. */
export interface VersionsHost {
  readonly db: SqliteDatabase;
  stmt(key: string, build: () => string): Statement;
  now(): number;
  storedEmbedder(): StoredEmbedder | null;
  /** Upserts inside the caller's transaction; new rows get `consolidatedAt` (null: pending). */
  upsertInTransaction(writes: readonly MemoryWrite[], consolidatedAt: number | null): void;
  markVectorSuperseded(rid: number): void;
  /** When each erased user was erased (null: never), for one write call. */
  erasedUsers(): (tenantId: string, userId: string) => number | null;
}

const LIVE = 'm.superseded_by IS NULL AND (m.valid_to IS NULL OR m.valid_to > ?)';

const currentSchema = z.object({
  rid: z.number().int(),
  tenant_id: z.string(),
  user_id: z.string(),
  superseded_by: z.string().nullable(),
});
const opRowSchema = z.object({ op: z.string(), outcome: z.string(), applied_at: z.number().int() });
const seqSchema = z.object({ seq: z.number().int() });
const idSchema = z.object({ op_id: z.string() });
const vectorRowSchema = z.object({ id: z.string(), embedding: z.instanceof(Buffer) });
const neighbourSchema = z.object({ rid: z.number().int(), distance: z.number().nullable() });
const pendingUserSchema = z.object({ tenant_id: z.string(), user_id: z.string(), pending: z.number().int() });

/**
 * Versions and sleep-time consolidation in the SQLite store: decisions applied atomically and once per op id,
 * history through the op links, nearest neighbours within a user's vec0 rows, and the pending set.
 */
export class SqliteMemoryVersions {
  constructor(private readonly host: VersionsHost) {}

  applyOps(ops: readonly OpWrite[]): ApplyResult {
    const plans = ops.map((write, index) => planOp(write, index));
    return writeTransaction(this.host.db, 'applying memory ops', () => {
      let applied = 0;
      let stale = 0;
      let duplicate = 0;
      const now = this.host.now();
      const erasedAt = this.host.erasedUsers();
      for (const { op, replacements } of plans) {
        const known = this.host
          .stmt('op-known', () => 'SELECT 1 FROM memory_ops WHERE tenant_id = ? AND op_id = ?')
          .get(op.tenantId, op.opId);
        if (known !== undefined) {
          duplicate++;
          continue;
        }
        const targets = this.currentTargets(op);
        const erased = op.userId === null ? null : erasedAt(op.tenantId, op.userId);
        if (erased !== null && (op.requestedAt <= erased || targets === null)) {
          // Decided before its user was erased, or about memories the erasure removed: not applied, and
          // not recorded either (its replacements hold the erased user's text).
          stale++;
          continue;
        }
        const outcome = targets === null ? 'stale' : 'applied';
        if (targets !== null && (op.op === 'update' || op.op === 'supersede')) {
          if (op.op === 'update') this.host.upsertInTransaction(replacements, now);
          const by = op.replacementIds[0];
          if (by === undefined)
            throw new InvalidInputError(`${op.op} needs a replacement id`, 'replacementIds');
          const close = this.host.stmt(
            'op-close',
            () =>
              'UPDATE memories SET valid_to = ?, superseded_by = ? WHERE rid = ? AND superseded_by IS NULL',
          );
          for (const rid of targets) {
            close.run(op.validTo ?? op.requestedAt, by, rid);
            this.host.markVectorSuperseded(rid);
          }
        }
        this.record(op, outcome, now);
        if (outcome === 'applied') applied++;
        else stale++;
      }
      return { applied, stale, duplicate };
    });
  }

  /** The rids of the op's targets when every one is a current version in the op's scope, else null. */
  private currentTargets(op: MemoryOp): number[] | null {
    const rids: number[] = [];
    const select = this.host.stmt(
      'op-target',
      () => 'SELECT rid, tenant_id, user_id, superseded_by FROM memories WHERE id = ?',
    );
    for (const id of op.targetIds) {
      const raw = select.get(id);
      if (raw === undefined) return null;
      const row = currentSchema.parse(raw);
      const inScope = row.tenant_id === op.tenantId && (op.userId === null || row.user_id === op.userId);
      if (!inScope || row.superseded_by !== null) return null;
      rids.push(row.rid);
    }
    return rids;
  }

  private record(op: MemoryOp, outcome: 'applied' | 'stale', at: number): void {
    const row = this.host
      .stmt(
        'op-insert',
        () =>
          `INSERT INTO memory_ops (tenant_id, op_id, user_id, kind, outcome, applied_at, op)
           VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
      )
      .get(op.tenantId, op.opId, op.userId, op.op, outcome, at, JSON.stringify(op));
    const { seq } = seqSchema.parse(row);
    const link = this.host.stmt(
      'op-link',
      () => 'INSERT OR IGNORE INTO memory_op_links (tenant_id, memory_id, op_seq, role) VALUES (?, ?, ?, ?)',
    );
    for (const [id, role] of opTouches(op)) link.run(op.tenantId, id, seq, role);
  }

  recordedOps(tenantId: string, opIds: readonly string[]): Set<string> {
    assertId(tenantId, 'tenantId');
    const rows = this.host
      .stmt(
        'op-recorded',
        () =>
          'SELECT op_id FROM memory_ops WHERE tenant_id = ? AND op_id IN (SELECT value FROM json_each(?))',
      )
      .all(tenantId, JSON.stringify(opIds));
    return new Set(rows.map((row) => idSchema.parse(row).op_id));
  }

  history(
    scope: Scope,
    id: string,
    loadEntry: (id: string) => MemoryEntry | undefined,
  ): MemoryHistory | undefined {
    assertScope(scope);
    assertId(id, 'id');
    const start = loadEntry(id);
    if (start === undefined) return undefined;
    const versions = new Map<string, MemoryEntry>([[id, start]]);
    const ops = new Map<number, RecordedOp>();
    const opsOf = this.host.stmt(
      'history-ops',
      () =>
        `SELECT o.seq, o.op, o.outcome, o.applied_at FROM memory_op_links l JOIN memory_ops o ON o.seq = l.op_seq
         WHERE l.tenant_id = ? AND l.memory_id = ? AND l.role IN ('target', 'replacement')`,
    );
    const queue = [id];
    for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
      for (const raw of opsOf.all(scope.tenantId, next)) {
        const { seq } = seqSchema.parse(raw);
        if (ops.has(seq)) continue;
        const recorded = parseRecordedOp(opRowSchema.parse(raw));
        ops.set(seq, recorded);
        if (recorded.op.op !== 'update' || recorded.outcome !== 'applied') continue;
        for (const linked of [...recorded.op.targetIds, ...recorded.op.replacementIds]) {
          if (versions.has(linked)) continue;
          const entry = loadEntry(linked);
          if (entry === undefined) continue;
          versions.set(linked, entry);
          queue.push(linked);
        }
      }
    }
    return orderHistory([...versions.values()], [...ops.entries()]);
  }

  nearest(
    requests: readonly NearestRequest[],
    loadRows: (tenantId: string, rids: number[]) => Map<number, MemoryRow>,
  ): Neighbour[][] {
    const stored = this.host.storedEmbedder();
    return requests.map((request, index) => {
      const scope = checkUserScope(request.scope);
      const k = checkLimit(request.k);
      checkVector(request.vector, `requests[${index}].vector`);
      if (stored === null) return [];
      if (request.embedderId !== stored.id || request.vector.length !== stored.dims) {
        throw new LightmemError(
          'model_mismatch',
          `query embedded by ${request.embedderId} (${request.vector.length} dims) but this store holds vectors of ${stored.id} (${stored.dims})`,
          { field: `requests[${index}].embedderId` },
        );
      }
      const bounded = request.occurredAtMost !== undefined;
      const rows = this.host
        .stmt(
          `nearest:${bounded ? 1 : 0}`,
          () =>
            `SELECT rowid AS rid, distance FROM memory_vectors WHERE embedding MATCH ? AND k = ?
             AND tenant_id = ? AND user_id = ? AND superseded = 0 ${bounded ? 'AND occurred_at <= ?' : ''}`,
        )
        .all(
          vectorBlob(request.vector),
          k,
          scope.tenantId,
          scope.userId,
          ...(bounded ? [BigInt(request.occurredAtMost ?? 0)] : []),
        )
        .map((row) => neighbourSchema.parse(row));
      const entries = loadRows(
        scope.tenantId,
        rows.map((row) => row.rid),
      );
      const now = this.host.now();
      const out: Neighbour[] = [];
      for (const { rid, distance } of rows) {
        const row = entries.get(rid);
        if (row === undefined || distance === null || row.user_id !== scope.userId) continue;
        if (row.superseded_by !== null || (row.valid_to !== null && row.valid_to <= now)) continue;
        out.push({ memory: rowToEntry(row), similarity: 1 - distance });
      }
      return out;
    });
  }

  embeddings(
    scope: Scope,
    ids: readonly string[],
    where: { sql: string; params: readonly unknown[]; key: string },
  ): Map<string, Float32Array> {
    assertScope(scope);
    const out = new Map<string, Float32Array>();
    if (this.host.storedEmbedder() === null || ids.length === 0) return out;
    const rows = this.host
      .stmt(
        `embeddings:${where.key}`,
        () =>
          `SELECT m.id, v.embedding FROM memories m CROSS JOIN memory_vectors v ON v.rowid = m.rid
           WHERE m.id IN (SELECT value FROM json_each(?)) AND ${where.sql}`,
      )
      .all(JSON.stringify(ids), ...where.params);
    for (const raw of rows) {
      const row = vectorRowSchema.parse(raw);
      const copy = Buffer.from(row.embedding);
      out.set(row.id, new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4));
    }
    return out;
  }

  pendingConsolidation(scope: Scope, limit: number): MemoryEntry[] {
    const user = checkUserScope(scope);
    checkLimit(limit);
    return this.host
      .stmt(
        'pending',
        () =>
          `SELECT m.* FROM memories m WHERE m.tenant_id = ? AND m.user_id = ? AND m.consolidated_at IS NULL
           AND ${LIVE} ORDER BY m.occurred_at, m.id LIMIT ?`,
      )
      .all(user.tenantId, user.userId, this.host.now(), limit)
      .map((row) => rowToEntry(parseMemoryRow(row)));
  }

  markConsolidated(scope: Scope, ids: readonly string[], at: number): number {
    const user = checkUserScope(scope);
    ids.forEach((id, i) => assertId(id, `ids[${i}]`));
    if (!Number.isSafeInteger(at)) throw new InvalidInputError('at must be an integer epoch ms', 'at');
    if (ids.length === 0) return 0;
    return writeTransaction(
      this.host.db,
      'marking memories consolidated',
      () =>
        this.host
          .stmt(
            'mark-consolidated',
            () =>
              `UPDATE memories SET consolidated_at = ? WHERE tenant_id = ? AND user_id = ?
             AND consolidated_at IS NULL AND id IN (SELECT value FROM json_each(?))`,
          )
          .run(at, user.tenantId, user.userId, JSON.stringify(ids)).changes,
    );
  }

  pendingUsers(tenantId: string | undefined): PendingUser[] {
    if (tenantId !== undefined) assertId(tenantId, 'tenantId');
    const byTenant = tenantId !== undefined;
    return this.host
      .stmt(
        `pending-users:${byTenant ? 1 : 0}`,
        () =>
          `SELECT m.tenant_id, m.user_id, COUNT(*) AS pending FROM memories m
           WHERE m.consolidated_at IS NULL AND ${LIVE} ${byTenant ? 'AND m.tenant_id = ?' : ''}
           GROUP BY m.tenant_id, m.user_id ORDER BY m.tenant_id, m.user_id`,
      )
      .all(this.host.now(), ...(byTenant ? [tenantId] : []))
      .map((raw) => {
        const row = pendingUserSchema.parse(raw);
        return { tenantId: row.tenant_id, userId: row.user_id, pending: row.pending };
      });
  }
}
