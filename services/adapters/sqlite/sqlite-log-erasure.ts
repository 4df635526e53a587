import type { ErasureTombstone, LogErasure, StateWrite } from '../../core/ports/event-log.js';
import { Topics, type TopicName } from '../../core/model/topics.js';
import { recordOwner, type RecordOwner } from '../../core/model/record-owner.js';
import { stateKeyOwner, stateKeyPrefix, statePrefix, userStatePrefix } from '../../stages/state-keys.js';
import { AvroCodec } from './avro-codec.js';
import type { SqliteDatabase } from './database.js';

/**
 * Migration 4 of the log: who each record belongs to, and the tombstones of erased users.
 *
 * `records.tenant_id` / `records.user_id` name the data subject of each record (see `recordOwner`), filled
 * on append and here for the records already there (decoded once), so erasing a user is one index range
 * instead of decoding every record of every topic. `erasures` holds one tombstone per erased user: the
 * latest erasure time (nothing of the user from before it may come back: replay checks it), `seq` (orders
 * erasures: a stage batch read before one is fenced at commit, see `SqliteLogErasure.fence`), and the
 * receipt once every part of the erasure finished.
 */
export function addRecordOwners(db: SqliteDatabase): void {
  db.exec(`
    ALTER TABLE records ADD COLUMN tenant_id TEXT;
    ALTER TABLE records ADD COLUMN user_id TEXT;
  `);
  const schema = db.prepare<[string], { schema: string }>(
    'SELECT schema FROM writer_schemas WHERE fingerprint = ?',
  );
  const codec = new AvroCodec((fingerprint) => schema.get(fingerprint)?.schema);
  const owner = db.prepare<[string, number], RecordOwner>(
    'SELECT tenant_id AS tenantId, user_id AS userId FROM records WHERE topic = ? AND offset = ?',
  );
  const update = db.prepare<[string | null, string | null, string, number]>(
    'UPDATE records SET tenant_id = ?, user_id = ? WHERE topic = ? AND offset = ?',
  );
  // Dead letters last: their owner is that of their source record, when the log still has it.
  const topics = [...Object.values(Topics).filter((t) => t !== Topics.deadLetters), Topics.deadLetters];
  const page = db.prepare<[string, number], { offset: number; value: Buffer; schema_fp: string }>(
    `SELECT offset, value, schema_fp FROM records WHERE topic = ? AND offset > ? ORDER BY offset LIMIT ${backfillPage}`,
  );
  for (const topic of topics) {
    // Page by page (a statement cannot write while another one is still reading on the same connection).
    for (let rows = page.all(topic, -1); rows.length > 0; rows = page.all(topic, rows.at(-1)?.offset ?? 0)) {
      const owners = rows.flatMap((row) => {
        let value;
        try {
          value = codec.decode(topic, row.value, row.schema_fp);
        } catch {
          // A record no reader can decode is nobody's (no consumer can read it either): the log still opens.
          return [];
        }
        const found = recordOwner(topic, value, (source, offset) => owner.get(source, offset));
        return [{ offset: row.offset, owner: found }];
      });
      for (const { offset, owner: o } of owners) update.run(o.tenantId, o.userId, topic, offset);
    }
  }
  db.exec(`
    CREATE INDEX records_owner ON records (tenant_id, user_id) WHERE user_id IS NOT NULL;
    CREATE TABLE erasures (
      tenant_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      erased_at INTEGER NOT NULL,
      seq INTEGER NOT NULL,
      completed_at INTEGER,
      receipt TEXT,
      PRIMARY KEY (tenant_id, user_id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX erasures_seq ON erasures (seq);
  `);
}

const backfillPage = 2_000;

/** The highest codepoint: sorts after every character in SQLite's (UTF-8 byte) order. */
const top = '\u{10FFFF}';

function ownerKey(tenantId: string | null, userId: string | null): string {
  return JSON.stringify([tenantId, userId]);
}

/** Users erased while a stage batch was in flight: what the batch made of their records must not land. */
export interface ErasureFence {
  /** Whether a record (by its owner) or a state key belongs to one of them. */
  ownsRecord(owner: RecordOwner): boolean;
  ownsStateKey(key: string): boolean;
}

interface TombstoneRow {
  tenant_id: string;
  user_id: string;
  erased_at: number;
  completed_at: number | null;
  receipt: string | null;
}

/**
 * Erasure in the SQLite log: the records of a user (every topic, by the owner columns), the dedup keys that
 * are part of them, the user's stage state (every group, every key prefix: keys name tenant and user right
 * after their prefix), and the tombstone. Every method runs inside the caller's transaction.
 */
export class SqliteLogErasure {
  private readonly statements;

  constructor(db: SqliteDatabase) {
    this.statements = {
      tombstone: db.prepare<[string, string, number]>(
        `INSERT INTO erasures (tenant_id, user_id, erased_at, seq, completed_at, receipt)
         VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM erasures), NULL, NULL)
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET erased_at = MAX(erased_at, excluded.erased_at),
           seq = excluded.seq, completed_at = NULL, receipt = NULL`,
      ),
      complete: db.prepare<[number, string, string, string]>(
        'UPDATE erasures SET completed_at = ?, receipt = ? WHERE tenant_id = ? AND user_id = ?',
      ),
      list: db.prepare<[], TombstoneRow>(
        'SELECT tenant_id, user_id, erased_at, completed_at, receipt FROM erasures ORDER BY tenant_id, user_id',
      ),
      listTenant: db.prepare<[string], TombstoneRow>(
        'SELECT tenant_id, user_id, erased_at, completed_at, receipt FROM erasures WHERE tenant_id = ? ORDER BY user_id',
      ),
      seq: db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM erasures'),
      erasedAt: db.prepare<[string, string], { erased_at: number }>(
        'SELECT erased_at FROM erasures WHERE tenant_id = ? AND user_id = ?',
      ),
      since: db.prepare<[number], { tenant_id: string; user_id: string }>(
        'SELECT tenant_id, user_id FROM erasures WHERE seq > ?',
      ),
      deleteRecords: db.prepare<[string, string], { topic: string; size: number }>(
        'DELETE FROM records WHERE tenant_id = ? AND user_id = ? RETURNING topic, length(value) AS size',
      ),
      // Dead letters of bad input that named the user but no tenant (the tenant came from the request).
      deleteUntenanted: db.prepare<[string, string], { topic: string; size: number }>(
        `DELETE FROM records WHERE tenant_id IS NULL AND user_id = ? AND topic = ?
         RETURNING topic, length(value) AS size`,
      ),
      nextGroup: db.prepare<[string], { grp: string }>(
        'SELECT grp FROM stage_state WHERE grp > ? ORDER BY grp LIMIT 1',
      ),
      nextKey: db.prepare<[string, string], { key: string }>(
        'SELECT key FROM stage_state WHERE grp = ? AND key > ? ORDER BY key LIMIT 1',
      ),
      deleteRange: db.prepare<[string, string, string]>(
        'DELETE FROM stage_state WHERE grp = ? AND key >= ? AND key < ?',
      ),
      usage: db.prepare<[number, number, string]>(
        'UPDATE topic_usage SET records = records - ?, bytes = bytes - ? WHERE topic = ?',
      ),
    };
  }

  /** Removes the user's records and state and leaves (or renews) the tombstone. */
  eraseUser(tenantId: string, userId: string, erasedAt: number): LogErasure {
    const s = this.statements;
    s.tombstone.run(tenantId, userId, erasedAt);
    const removed = s.deleteRecords.all(tenantId, userId);
    removed.push(...s.deleteUntenanted.all(userId, Topics.deadLetters));
    const records = Object.fromEntries(Object.values(Topics).map((topic) => [topic, 0])) as Record<
      TopicName,
      number
    >;
    const bytes = new Map<string, number>();
    for (const row of removed) {
      const topic = row.topic as TopicName;
      records[topic] = (records[topic] ?? 0) + 1;
      bytes.set(topic, (bytes.get(topic) ?? 0) + row.size);
    }
    for (const [topic, size] of bytes) s.usage.run(records[topic as TopicName], size, topic);
    return { records, state: this.eraseState(tenantId, userId) };
  }

  /**
   * Deletes the user's keys in every group: for each key prefix of a group (found by skipping from one
   * prefix to the next through the primary key, a few lookups however large the state is), the range
   * `<prefix>␟<tenant>␟<user>␟…`.
   */
  private eraseState(tenantId: string, userId: string): Record<string, number> {
    const s = this.statements;
    const counts: Record<string, number> = {};
    for (let group = s.nextGroup.get('')?.grp; group !== undefined; group = s.nextGroup.get(group)?.grp) {
      let removed = 0;
      let cursor = '';
      for (let row = s.nextKey.get(group, cursor); row !== undefined; row = s.nextKey.get(group, cursor)) {
        const prefix = stateKeyPrefix(row.key);
        if (prefix === null) {
          cursor = row.key;
          continue;
        }
        const start = userStatePrefix(prefix, tenantId, userId);
        removed += s.deleteRange.run(group, start, `${start}${top}`).changes;
        // Past every key of this prefix; a key at or past that bound (it would hold U+10FFFF) moves on by one.
        const past = `${statePrefix(prefix)}${top}`;
        cursor = row.key >= past ? row.key : past;
      }
      counts[group] = removed;
    }
    return counts;
  }

  complete(tenantId: string, userId: string, receipt: string, completedAt: number): void {
    this.statements.complete.run(completedAt, receipt, tenantId, userId);
  }

  tombstones(tenantId?: string): ErasureTombstone[] {
    const rows =
      tenantId === undefined ? this.statements.list.all() : this.statements.listTenant.all(tenantId);
    return rows.map((row) => ({
      tenantId: row.tenant_id,
      userId: row.user_id,
      erasedAt: row.erased_at,
      completedAt: row.completed_at,
      receipt: row.receipt,
    }));
  }

  /** When the user was last erased (epoch ms), or null. */
  erasedAt(tenantId: string, userId: string): number | null {
    return this.statements.erasedAt.get(tenantId, userId)?.erased_at ?? null;
  }

  /** The sequence number of the latest erasure (0: none), read with a batch to fence its commit. */
  currentSeq(): number {
    return this.statements.seq.get()?.seq ?? 0;
  }

  /** The users erased after `seq`, or null when there are none (the common case: nothing to filter). */
  fence(seq: number): ErasureFence | null {
    const rows = this.statements.since.all(seq);
    if (rows.length === 0) return null;
    const erased = new Set(rows.map((row) => ownerKey(row.tenant_id, row.user_id)));
    const users = new Set(rows.map((row) => row.user_id));
    return {
      ownsRecord: (owner) =>
        owner.userId !== null &&
        (erased.has(ownerKey(owner.tenantId, owner.userId)) ||
          (owner.tenantId === null && users.has(owner.userId))),
      ownsStateKey: (key) => {
        const owner = stateKeyOwner(key);
        return owner !== null && erased.has(ownerKey(owner.tenantId, owner.userId));
      },
    };
  }
}

/** State writes without those of fenced users. */
export function unfencedState(writes: readonly StateWrite[], fence: ErasureFence | null): StateWrite[] {
  return fence === null ? [...writes] : writes.filter((write) => !fence.ownsStateKey(write.key));
}
