import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import { MemoryKindValues, type MemoryEntry } from '../../core/model/generated.js';
import { pipelineVersionSchema } from '../memory/entry-schema.js';
import type { Migration, SqliteDatabase } from './database.js';

/**
 * Schema of the SQLite memory store. Migrations are append-only: never edit a shipped entry, add one.
 *
 * - `memories`: one row per MemoryEntry. `rid` is an INTEGER PRIMARY KEY (a stable rowid alias that VACUUM
 *   cannot renumber) shared as rowid by the FTS and vector tables; `id` is the entry id.
 * - `memories_fts`: contentless FTS5 (the text lives in `memories`; `contentless_delete` lets us delete and
 *   replace rows). Columns: text, speaker (so a query naming a person finds what that person said; weighted
 *   lower than the text at query time) and scope (hashed scope tokens, see fts-query.ts).
 * - `meta`: key/value facts about the store, e.g. the embedder id and dims of the stored vectors.
 * - `memory_vectors` (vec0) is not here: its dimension comes from the first embedding written, so it is
 *   created then (see vectorTableSql).
 */
export const MEMORY_MIGRATIONS: readonly Migration[] = [
  `
  CREATE TABLE memories (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT,
    conversation_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fact', 'relation', 'summary')),
    topic_id TEXT NOT NULL,
    speaker TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    zone_offset TEXT NOT NULL,
    ingested_at INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_to INTEGER,
    superseded_by TEXT,
    source_turn_ids TEXT NOT NULL, -- JSON array of strings
    pipeline TEXT NOT NULL,        -- JSON PipelineVersion
    content_hash TEXT NOT NULL     -- of the entry as written + its embedding: detects unchanged upserts
  ) STRICT;
  CREATE INDEX memories_user_time ON memories (tenant_id, user_id, occurred_at, id);
  CREATE INDEX memories_tenant_time ON memories (tenant_id, occurred_at, id);
  CREATE INDEX memories_conversation ON memories (tenant_id, conversation_id);
  CREATE VIRTUAL TABLE memories_fts USING fts5(
    text, speaker, scope,
    tokenize = 'porter unicode61', content = '', contentless_delete = 1
  );
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
  `,
  // 2: the uncompressed source text a memory is indexed by (null: `text` is the source text).
  `ALTER TABLE memories ADD COLUMN source_text TEXT;`,
  // 3: the kinds an LLM extractor adds (preference, commitment). SQLite cannot alter a CHECK: the table is
  // rebuilt with the same columns in the same order and the same rids (the FTS and vector rows key on them).
  `
  CREATE TABLE memories_v3 (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT,
    conversation_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fact', 'relation', 'summary', 'preference', 'commitment')),
    topic_id TEXT NOT NULL,
    speaker TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    zone_offset TEXT NOT NULL,
    ingested_at INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_to INTEGER,
    superseded_by TEXT,
    source_turn_ids TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    source_text TEXT
  ) STRICT;
  INSERT INTO memories_v3 SELECT * FROM memories;
  DROP TABLE memories;
  ALTER TABLE memories_v3 RENAME TO memories;
  CREATE INDEX memories_user_time ON memories (tenant_id, user_id, occurred_at, id);
  CREATE INDEX memories_tenant_time ON memories (tenant_id, occurred_at, id);
  CREATE INDEX memories_conversation ON memories (tenant_id, conversation_id);
  `,
  // 4: versions and sleep-time consolidation. `consolidated_at`: when a consolidation took the memory as a
  // source (NULL: pending). `memory_ops`: every decision applied (or found stale), idempotent by
  // (tenant, op id); `memory_op_links`: which memories an op is about, so history walks by index.
  `
  ALTER TABLE memories ADD COLUMN consolidated_at INTEGER;
  CREATE INDEX memories_pending ON memories (tenant_id, user_id, occurred_at, id)
    WHERE consolidated_at IS NULL AND superseded_by IS NULL;
  CREATE INDEX memories_superseded_by ON memories (superseded_by) WHERE superseded_by IS NOT NULL;
  CREATE TABLE memory_ops (
    seq INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    op_id TEXT NOT NULL,
    user_id TEXT,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'stale')),
    applied_at INTEGER NOT NULL,
    op TEXT NOT NULL, -- JSON MemoryOp
    UNIQUE (tenant_id, op_id)
  ) STRICT;
  CREATE TABLE memory_op_links (
    tenant_id TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    op_seq INTEGER NOT NULL REFERENCES memory_ops (seq) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('target', 'replacement', 'source')),
    PRIMARY KEY (tenant_id, memory_id, op_seq, role)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX memory_op_links_op ON memory_op_links (op_seq);
  `,
  // 5: erasure. A user's recorded ops by index; `erased_users`: when each erased user was erased, so that
  // work in flight during the erasure (an indexer batch, a consolidation) cannot write their data back.
  `
  CREATE INDEX memory_ops_user ON memory_ops (tenant_id, user_id);
  CREATE TABLE erased_users (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    erased_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
  ) STRICT, WITHOUT ROWID;
  `,
  // 6: user_id becomes a second partition key of memory_vectors (a user's KNN reads only that user's
  // chunks, not the whole tenant's) with small chunks. The vectors are copied with their rowids (the rids).
  (db) => {
    rebuildVectorTable(db);
  },
];

/** Rows of a vec0 chunk. vec0 allocates whole chunks per partition: small, as there is one per user. */
export const VECTOR_CHUNK_SIZE = 64;

/**
 * Rebuilds memory_vectors in the layout of vectorTableSql, keeping every row and its rowid; nothing to do
 * when the table does not exist yet (it is created with the first embedding). Runs inside the migration's
 * transaction. The vectors pass through a temporary table: a vec0 table cannot be renamed or altered.
 */
function rebuildVectorTable(db: SqliteDatabase): void {
  const exists = db
    .prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'memory_vectors'`)
    .get();
  if (exists === undefined) return;
  const dims = db.prepare(`SELECT value FROM meta WHERE key = 'embedder_dims'`).pluck().get();
  if (typeof dims !== 'string') throw corrupt('embedder_dims of the vector table', dims);
  const columns =
    'tenant_id, user_id, agent_id, conversation_id, session_id, occurred_at, superseded, embedding';
  db.exec(`
    CREATE TEMP TABLE memory_vectors_copy AS SELECT rowid AS rid, ${columns} FROM memory_vectors;
    DROP TABLE memory_vectors;
    ${vectorTableSql(Number(dims))};
    INSERT INTO memory_vectors (rowid, ${columns}) SELECT rid, ${columns} FROM memory_vectors_copy ORDER BY rid;
    DROP TABLE memory_vectors_copy;
  `);
}

/**
 * The vector table. Partitioned by tenant and user: a KNN query names the tenant (so it never reads another
 * tenant's vectors) and, when it has one, the user, so it reads only that user's chunks (a user's search
 * costs what the user holds, not what the tenant holds). Without a user it reads every user partition of
 * the tenant. The other scope fields, the event time and a superseded flag are metadata columns so KNN
 * filters on them while scanning instead of after the top k was cut.
 */
export function vectorTableSql(dims: number): string {
  if (!Number.isSafeInteger(dims) || dims <= 0 || dims > 8192) {
    throw new LightmemError('invalid_input', `embedding dimension ${dims} is out of range`, {
      field: 'embedding',
    });
  }
  return `CREATE VIRTUAL TABLE memory_vectors USING vec0(
    tenant_id TEXT PARTITION KEY,
    user_id TEXT PARTITION KEY,
    agent_id TEXT,
    conversation_id TEXT,
    session_id TEXT,
    occurred_at INTEGER,
    superseded INTEGER,
    embedding float[${dims}] distance_metric=cosine,
    chunk_size = ${VECTOR_CHUNK_SIZE}
  )`;
}

/** A `memories` row as SQLite returns it (read with `SELECT m.*`). */
const memoryRowSchema = z.object({
  rid: z.number().int(),
  id: z.string(),
  tenant_id: z.string(),
  user_id: z.string(),
  agent_id: z.string().nullable(),
  conversation_id: z.string(),
  session_id: z.string(),
  text: z.string(),
  kind: z.enum(MemoryKindValues),
  topic_id: z.string(),
  speaker: z.string(),
  occurred_at: z.number().int(),
  zone_offset: z.string(),
  ingested_at: z.number().int(),
  valid_from: z.number().int(),
  valid_to: z.number().int().nullable(),
  superseded_by: z.string().nullable(),
  source_turn_ids: z.string(),
  pipeline: z.string(),
  source_text: z.string().nullable(),
});
export type MemoryRow = z.infer<typeof memoryRowSchema>;

const sourceTurnIdsSchema = z.array(z.string());

function corrupt(what: string, cause: unknown): LightmemError {
  return new LightmemError('storage_corrupt', `memory store: unreadable ${what}`, { cause });
}

export function parseMemoryRow(row: unknown): MemoryRow {
  const parsed = memoryRowSchema.safeParse(row);
  if (!parsed.success) throw corrupt('memories row', parsed.error);
  return parsed.data;
}

export function rowToEntry(row: MemoryRow): MemoryEntry {
  let sourceTurnIds: string[];
  let pipeline: MemoryEntry['pipeline'];
  try {
    sourceTurnIds = sourceTurnIdsSchema.parse(JSON.parse(row.source_turn_ids));
    pipeline = pipelineVersionSchema.parse(JSON.parse(row.pipeline));
  } catch (error) {
    throw corrupt(`JSON column of memory ${row.id}`, error);
  }
  return {
    id: row.id,
    tenantId: row.tenant_id,
    userId: row.user_id,
    agentId: row.agent_id,
    conversationId: row.conversation_id,
    sessionId: row.session_id,
    text: row.text,
    kind: row.kind,
    topicId: row.topic_id,
    speaker: row.speaker,
    occurredAt: row.occurred_at,
    zoneOffset: row.zone_offset,
    ingestedAt: row.ingested_at,
    validFrom: row.valid_from,
    validTo: row.valid_to,
    supersededBy: row.superseded_by,
    sourceTurnIds,
    pipeline,
    sourceText: row.source_text,
  };
}

/** Parameters of the INSERT/UPDATE statements, named after the columns. */
export function entryParams(
  entry: MemoryEntry,
  validTo: number | null,
  supersededBy: string | null,
  hash: string,
) {
  return {
    id: entry.id,
    tenant_id: entry.tenantId,
    user_id: entry.userId,
    agent_id: entry.agentId,
    conversation_id: entry.conversationId,
    session_id: entry.sessionId,
    text: entry.text,
    kind: entry.kind,
    topic_id: entry.topicId,
    speaker: entry.speaker,
    occurred_at: entry.occurredAt,
    zone_offset: entry.zoneOffset,
    ingested_at: entry.ingestedAt,
    valid_from: entry.validFrom,
    valid_to: validTo,
    superseded_by: supersededBy,
    source_turn_ids: JSON.stringify(entry.sourceTurnIds),
    pipeline: JSON.stringify({
      scorer: entry.pipeline.scorer,
      segmenter: entry.pipeline.segmenter,
      extractor: entry.pipeline.extractor,
      promptHash: entry.pipeline.promptHash,
      embedder: entry.pipeline.embedder,
    }),
    source_text: entry.sourceText,
    content_hash: hash,
  };
}
