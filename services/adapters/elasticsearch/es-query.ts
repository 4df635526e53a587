import type { estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import type { Scope } from '../../core/model/scope.js';
import type { Range } from '../memory/request-checks.js';
import { SPEAKER_WEIGHT } from './es-mapping.js';

type Query = estypes.QueryDslQueryContainer;

/**
 * Query building for the Elasticsearch memory store. Query bodies are built from checked values only
 * (ids pass assertId, query words pass queryTerms, numbers are integers) and go into `term` / `match`
 * clauses as values, never into a query string, so no input is ever parsed as query syntax.
 */

/** Names of the two scored parts of the hybrid query (`matched_queries` reports each one's score). */
export const LEXICAL = 'lexical';
export const SEMANTIC = 'semantic';
/**
 * Boost of the kNN part. The hybrid query ranks by BM25 + boost × knnScore, and knnScore of a positive
 * cosine is > 0.5, so every kNN candidate with a positive cosine ranks above every document that only
 * matched words: the top (kNN k + lexical n) hits then hold both candidate lists whole (see hybridQuery).
 * BM25 of even a 32-word query stays far below 0.5 × 1e6; the part's own score is read back divided by it.
 */
export const SEMANTIC_BOOST = 1e6;

/** The filters of a scope: the tenant always, then each scope field that is set. The only place. */
export function scopeFilters(scope: Scope): Query[] {
  const filters: Query[] = [{ term: { tenantId: scope.tenantId } }];
  for (const field of ['userId', 'agentId', 'conversationId', 'sessionId'] as const) {
    const value = scope[field];
    if (value !== undefined) filters.push({ term: { [field]: value } });
  }
  return filters;
}

/** A bool query of the scope's filters, `filter` and, when given, at least one of `should`. */
export function scopedQuery(scope: Scope, filter: readonly Query[], should: readonly Query[] = []): Query {
  return {
    bool: {
      filter: [...scopeFilters(scope), ...filter],
      ...(should.length === 0 ? {} : { should: [...should], minimum_should_match: 1 }),
    },
  };
}

/** Live at `now`: not superseded, and validTo unset or later than now (validTo is exclusive). */
export function liveFilter(now: number): Query {
  return {
    bool: {
      must_not: [{ exists: { field: 'supersededBy' } }],
      should: [
        { bool: { must_not: [{ exists: { field: 'validTo' } }] } },
        { range: { validTo: { gt: now } } },
      ],
      minimum_should_match: 1,
    },
  };
}

/** Time range on occurredAt (from inclusive, to exclusive) and, when `liveAt` is given, validity then. */
export function memoryFilters(range: Range, liveAt: number | null): Query[] {
  const filters: Query[] = [];
  if (range.from !== undefined || range.to !== undefined) {
    filters.push({
      range: {
        occurredAt: {
          ...(range.from === undefined ? {} : { gte: range.from }),
          ...(range.to === undefined ? {} : { lt: range.to }),
        },
      },
    });
  }
  if (liveAt !== null) filters.push(liveFilter(liveAt));
  return filters;
}

/**
 * The versions valid at event time `asOf`: validFrom <= asOf < validTo (validTo absent: still valid),
 * superseded or not.
 */
export function asOfFilter(asOf: number): Query {
  return {
    bool: {
      filter: [{ range: { validFrom: { lte: asOf } } }],
      should: [
        { bool: { must_not: [{ exists: { field: 'validTo' } }] } },
        { range: { validTo: { gt: asOf } } },
      ],
      minimum_should_match: 1,
    },
  };
}

/** Not yet taken as a source by a consolidation (documents from before the field read as pending). */
export const PENDING: Query = { bool: { must_not: [{ exists: { field: 'consolidatedAt' } }] } };

/** BM25 over the searchable text, plus the speaker at a lower weight; any word may match. */
export function lexicalClause(terms: readonly string[]): Query {
  const query = terms.join(' ');
  return {
    bool: {
      _name: LEXICAL,
      should: [
        { match: { searchText: { query } } },
        { match: { speaker: { query, boost: SPEAKER_WEIGHT } } },
      ],
    },
  };
}

/**
 * kNN over the scope's vectors only: the scope and `filter` are kNN pre-filters, so the k candidates all
 * come from the scope (another tenant's or user's closer vectors never take their places).
 */
export function knnClause(scope: Scope, filter: readonly Query[], vector: Float32Array, k: number): Query {
  return {
    knn: {
      _name: SEMANTIC,
      field: 'embedding',
      query_vector: Array.from(vector),
      k,
      // More candidates per HNSW search than kept: better recall; a small filtered set is searched exactly.
      num_candidates: Math.min(10_000, Math.max(k * 2, 200)),
      filter: [...scopeFilters(scope), ...filter],
      boost: SEMANTIC_BOOST,
    },
  };
}

/**
 * kNN for `nearest`: the k vectors of the scope (and `filter`, as pre-filters) closest to `vector`, scored
 * (1 + cosine) / 2 (unboosted, so the hit's score is that).
 */
export function nearestClause(
  scope: Scope,
  filter: readonly Query[],
  vector: Float32Array,
  k: number,
): Query {
  return {
    knn: {
      field: 'embedding',
      query_vector: Array.from(vector),
      k,
      num_candidates: Math.min(10_000, Math.max(k * 2, 200)),
      filter: [...scopeFilters(scope), ...filter],
    },
  };
}

// ---------------------------------------------------------------- responses

const hitSchema = z.object({
  _id: z.string(),
  _index: z.string(),
  _score: z.number().nullish(),
  _source: z.unknown().optional(),
  matched_queries: z.union([z.record(z.string(), z.number()), z.array(z.string())]).optional(),
  fields: z.record(z.string(), z.array(z.unknown())).optional(),
  sort: z.array(z.union([z.string(), z.number(), z.null()])).optional(),
  _seq_no: z.number().int().optional(),
  _primary_term: z.number().int().optional(),
});
export type Hit = z.infer<typeof hitSchema>;

const searchResponseSchema = z.object({
  hits: z.object({
    total: z.object({ value: z.number().int() }).optional(),
    hits: z.array(hitSchema),
  }),
  aggregations: z.record(z.string(), z.unknown()).optional(),
});
export type SearchResult = z.infer<typeof searchResponseSchema>;

export function decodeSearch(response: unknown): SearchResult {
  const parsed = searchResponseSchema.safeParse(response);
  if (!parsed.success) {
    throw new LightmemError('internal', 'elasticsearch: unexpected search response', { cause: parsed.error });
  }
  return parsed.data;
}

/**
 * What a hybrid search asks Elasticsearch to return per candidate: the entry id and occurredAt from doc
 * values and each part's score, and no stored field. Reading `_id` or `_source` decompresses the block of
 * stored fields holding the document, vector included, so with a few hundred candidates it was most of the
 * request's time (LoCoMo dev: p50 44 → 7 ms server time for 360 candidates); the `id` field holds the `_id`.
 */
export const CANDIDATE_FIELDS = {
  stored_fields: '_none_',
  docvalue_fields: ['id', 'occurredAt'],
  include_named_queries_score: true,
} as const satisfies Partial<estypes.SearchRequest>;

const candidateHitSchema = z.object({
  matched_queries: z.union([z.record(z.string(), z.number()), z.array(z.string())]).optional(),
  fields: z.record(z.string(), z.array(z.unknown())).optional(),
});
const candidatesResponseSchema = z.object({
  hits: z.object({ hits: z.array(candidateHitSchema) }),
});

/** A candidate of a hybrid search: each named part's score, null when that part did not match it. */
export interface ScoredCandidate {
  readonly id: string;
  readonly occurredAt: number;
  readonly lexical: number | null;
  readonly semantic: number | null;
}

/** The hits of a request made with CANDIDATE_FIELDS, in the response's order. */
export function decodeCandidates(response: unknown): ScoredCandidate[] {
  const parsed = candidatesResponseSchema.safeParse(response);
  if (!parsed.success) {
    throw new LightmemError('internal', 'elasticsearch: unexpected search response', { cause: parsed.error });
  }
  return parsed.data.hits.hits.map((hit) => {
    const id = hit.fields?.['id']?.[0];
    if (typeof id !== 'string') {
      throw new LightmemError('storage_corrupt', 'memory store: a document has no id');
    }
    return {
      id,
      occurredAt: numericField({ _id: id, fields: hit.fields }, 'occurredAt'),
      lexical: matchedScore(hit.matched_queries, LEXICAL),
      semantic: matchedScore(hit.matched_queries, SEMANTIC),
    };
  });
}

const msearchSchema = z.object({ responses: z.array(z.unknown()) });
const msearchErrorSchema = z.object({
  status: z.number().int().optional(),
  error: z.object({ type: z.string(), reason: z.string().nullish() }).loose(),
});

/** The items of a multi-search response: each a search result or its own error. */
export function decodeMsearch(
  response: unknown,
): (
  SearchResult | { readonly status: number | undefined; readonly type: string; readonly reason: string }
)[] {
  const parsed = msearchSchema.safeParse(response);
  if (!parsed.success) {
    throw new LightmemError('internal', 'elasticsearch: unexpected msearch response', {
      cause: parsed.error,
    });
  }
  return parsed.data.responses.map((item) => {
    const failed = msearchErrorSchema.safeParse(item);
    if (!failed.success) return decodeSearch(item);
    const { status, error } = failed.data;
    return { status, type: error.type, reason: error.reason ?? '' };
  });
}

/** The score of a named part of a hit (include_named_queries_score), or null when it did not match. */
function matchedScore(matched: Hit['matched_queries'], name: string): number | null {
  if (matched === undefined) return null;
  if (Array.isArray(matched)) {
    throw new LightmemError(
      'internal',
      'elasticsearch: named query scores missing (include_named_queries_score)',
    );
  }
  return matched[name] ?? null;
}

/** A numeric doc value requested with docvalue_fields. */
export function numericField(hit: Pick<Hit, '_id' | 'fields'>, field: string): number {
  const value = hit.fields?.[field]?.[0];
  if (typeof value !== 'number') {
    throw new LightmemError('storage_corrupt', `memory store: document ${hit._id} has no ${field}`);
  }
  return value;
}
