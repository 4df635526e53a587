import { searchText } from '../../core/text/embedding-text.js';
import { createHash } from 'node:crypto';
import type { estypes } from '@elastic/elasticsearch';
import { LightmemError } from '../../core/errors.js';
import type { MemoryEntry } from '../../core/model/generated.js';
import { memoryEntrySchema } from '../memory/entry-schema.js';

/**
 * Index layout of the Elasticsearch memory store.
 *
 * - Versioned indices `<prefix>memories-v<N>` behind the alias `<prefix>memories` (its write index). An
 *   index template for `<prefix>memories-v*` carries settings and mapping, so a replay can build v2 from
 *   the raw log, compare, and switch the alias.
 * - One filtered alias per tenant, `<prefix>memories-t-<hash of tenant>` (a `term` filter on tenantId):
 *   every read of tenant data goes through it, so even a wrong query body cannot see another tenant.
 * - One document per MemoryEntry (`_id` = entry id) holding the entry as it is, plus `searchText` (what
 *   BM25 indexes: the source text, else the text), `contentHash` (unchanged upserts) and `embedding`.
 * - A meta document `!embedder` (`!` cannot occur in a memory id) records the embedder that fixed the
 *   vector dimension of this index version; the `embedding` field is mapped when it is created.
 * - Consolidation keeps two internal fields on a memory: `consolidatedAt` (when a consolidation took it as a
 *   source; absent or null = pending) and `closedBy` (the opId that closed it, so an op interrupted half-way
 *   is recognised as its own when it runs again). Both were added in template version 2; open() maps them
 *   on indices made by version 1 (LATER_FIELDS).
 * - Applied ops are kept in their own index (es-ops.ts), and the users erased so far in another
 *   (es-erased-users.ts).
 */

/** Bump when the template changes; an older template is replaced, a newer one left alone. */
export const TEMPLATE_VERSION = 2;
/** The first index version open() creates. */
const FIRST_VERSION = 1;

export interface IndexNames {
  /** What every index, alias and template name of the store starts with. */
  readonly prefix: string;
  /** The alias every index version sits behind; writes go to its write index. */
  readonly alias: string;
  readonly template: string;
  /** Index pattern of the template. */
  readonly pattern: string;
  /** The concrete index of a version. */
  index(version: number): string;
  /** The filtered alias of one tenant. */
  tenantAlias(tenantId: string): string;
  /** The index of recorded ops (es-ops.ts): versioned behind its own alias, with per-tenant aliases too. */
  readonly ops: AliasNames;
  /** When each erased user was erased (es-erased-users.ts): one index behind its alias. */
  readonly erasedUsers: AliasNames;
}

/** A versioned index behind an alias, with one filtered alias per tenant. */
export interface AliasNames {
  readonly alias: string;
  index(version: number): string;
  tenantAlias(tenantId: string): string;
}

const prefixPattern = /^[a-z0-9][a-z0-9_.-]{0,99}$/;

export function indexNames(prefix: string): IndexNames {
  if (!prefixPattern.test(prefix)) {
    throw new LightmemError(
      'config_invalid',
      `indexPrefix must be 1–100 characters of a-z 0-9 _ . - and start with a letter or digit (got ${JSON.stringify(prefix.slice(0, 40))})`,
      { field: 'indexPrefix' },
    );
  }
  const alias = `${prefix}memories`;
  const ops = aliasNames(`${prefix}memory-ops`);
  const erasedUsers = aliasNames(`${prefix}erased-users`);
  return { ...aliasNames(alias), prefix, template: alias, pattern: `${alias}-v*`, ops, erasedUsers };
}

function aliasNames(alias: string): AliasNames {
  return {
    alias,
    index: (version) => `${alias}-v${version}`,
    // Tenant ids may hold characters index names may not (`:` `#` `/`, upper case): a hash names the alias.
    // 128 bits: two tenants sharing an alias (which would merge their filters) is out of reach.
    tenantAlias: (tenantId) => `${alias}-t-${tenantHash(tenantId)}`,
  };
}

export function tenantHash(tenantId: string): string {
  return createHash('sha256').update(tenantId).digest('hex').slice(0, 32);
}

export const firstIndex = (names: AliasNames): string => names.index(FIRST_VERSION);

/** `_id` of the meta document recording the embedder. */
export const EMBEDDER_META_ID = '!embedder';
/** BM25 weight of the speaker field relative to the text (as the SQLite store weighs its FTS columns). */
export const SPEAKER_WEIGHT = 0.4;
/** Elasticsearch refuses longer ids. */
export const MAX_ID_BYTES = 512;
/** Fields kept in a document for the store itself, never returned as part of a memory. */
export const INTERNAL_FIELDS = [
  'searchText',
  'contentHash',
  'embedding',
  'embedderMeta',
  'consolidatedAt',
  'closedBy',
];

const keyword = { type: 'keyword' } as const;
const long = { type: 'long' } as const;
const stored = { type: 'keyword', index: false, doc_values: false } as const;

export function memoryMappings(analyzer: string): estypes.MappingTypeMapping {
  const text = { type: 'text', analyzer } as const;
  return {
    dynamic: 'strict',
    properties: {
      id: keyword,
      tenantId: keyword,
      userId: keyword,
      agentId: keyword,
      conversationId: keyword,
      sessionId: keyword,
      // Returned, not searched: BM25 runs on searchText (see searchTextOf).
      text: { type: 'text', index: false },
      sourceText: { type: 'text', index: false },
      searchText: text,
      speaker: text,
      kind: keyword,
      topicId: keyword,
      occurredAt: long,
      zoneOffset: stored,
      ingestedAt: long,
      validFrom: long,
      validTo: long,
      supersededBy: keyword,
      sourceTurnIds: keyword,
      pipeline: { type: 'object', enabled: false },
      contentHash: stored,
      embedderMeta: { type: 'object', enabled: false },
      ...LATER_FIELDS,
    },
  };
}

/**
 * Fields added after template version 1, put into the mapping of every index behind the alias on open
 * (adding a field is allowed on a live index; documents without it read as null).
 */
export const LATER_FIELDS = {
  consolidatedAt: long,
  closedBy: keyword,
} as const satisfies Record<string, estypes.MappingProperty>;

/** The `embedding` field, added when the first vector is written (its dimension is not known before). */
export function vectorMapping(dims: number): estypes.MappingProperty {
  // hnsw: float vectors as written (the default for larger dims quantizes them to int8).
  return {
    type: 'dense_vector',
    dims,
    index: true,
    similarity: 'cosine',
    index_options: { type: 'hnsw' },
  };
}

/** Name of the analyzer of searchText and speaker. */
export const TEXT_ANALYZER = 'lightmem_text';

/**
 * Index settings. One shard: BM25 statistics and the kNN top k are then exact for the whole index (more
 * shards would need dfs_query_then_fetch and a per-shard k). `filters` are the token filters after the
 * standard tokenizer (see analyzerFilters in es-indices.ts).
 */
export function indexSettings(filters: readonly string[]): estypes.IndicesIndexSettings {
  return {
    number_of_shards: 1,
    auto_expand_replicas: '0-1',
    analysis: {
      analyzer: { [TEXT_ANALYZER]: { type: 'custom', tokenizer: 'standard', filter: [...filters] } },
    },
  };
}

/** A memory as indexed. */
export interface MemoryDocument extends MemoryEntry {
  readonly searchText: string;
  readonly contentHash: string;
  readonly embedding?: number[];
  /** When a consolidation took the memory as a source (null: pending). */
  readonly consolidatedAt: number | null;
  /** The op that closed the memory (null when open, or closed by supersede()). */
  readonly closedBy: string | null;
}

/**
 * The document of `entry` with the validity the upsert decided and the first ingest time. Fields are
 * copied one by one: an untyped caller's extra properties never reach the (strict) mapping.
 */
export function toDocument(
  entry: MemoryEntry,
  write: {
    readonly validTo: number | null;
    readonly supersededBy: string | null;
    readonly ingestedAt: number;
    readonly contentHash: string;
    readonly embedding: Float32Array | undefined;
    readonly consolidatedAt?: number | null | undefined;
    readonly closedBy?: string | null | undefined;
  },
): MemoryDocument {
  const p = entry.pipeline;
  const document: MemoryDocument = {
    id: entry.id,
    tenantId: entry.tenantId,
    userId: entry.userId,
    agentId: entry.agentId,
    conversationId: entry.conversationId,
    sessionId: entry.sessionId,
    text: entry.text,
    kind: entry.kind,
    topicId: entry.topicId,
    speaker: entry.speaker,
    occurredAt: entry.occurredAt,
    zoneOffset: entry.zoneOffset,
    ingestedAt: write.ingestedAt,
    validFrom: entry.validFrom,
    validTo: write.validTo,
    supersededBy: write.supersededBy,
    sourceTurnIds: [...entry.sourceTurnIds],
    pipeline: {
      scorer: p.scorer,
      segmenter: p.segmenter,
      extractor: p.extractor,
      promptHash: p.promptHash,
      embedder: p.embedder,
    },
    sourceText: entry.sourceText,
    searchText: searchText(entry),
    contentHash: write.contentHash,
    consolidatedAt: write.consolidatedAt ?? null,
    closedBy: write.closedBy ?? null,
  };
  const vector = write.embedding;
  // Cosine has no meaning for a zero vector and Elasticsearch refuses one; such a memory is found by its
  // words only (the SQLite store never ranks it by vector either: its distance is undefined).
  if (vector === undefined || !hasMagnitude(vector)) return document;
  return { ...document, embedding: Array.from(vector) };
}

export function hasMagnitude(vector: Float32Array): boolean {
  return vector.some((value) => value !== 0);
}

/** A stored document back as a MemoryEntry (internal fields dropped). */
export function toEntry(source: unknown, id: string): MemoryEntry {
  const parsed = memoryEntrySchema.safeParse(source);
  if (!parsed.success) {
    throw new LightmemError('storage_corrupt', `memory store: unreadable document ${id}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}
