import { InvalidInputError, LightmemError } from '../../core/errors.js';
import { assertScope, type Scope } from '../../core/model/scope.js';
import type { SearchRequest } from '../../core/ports/memory-store.js';
import type { StoredEmbedder } from './embedder-check.js';
import { checkAsOf, checkLimit, checkTimeRange, checkVector, type Range } from './request-checks.js';

/** kNN candidates are capped here (sqlite-vec refuses k above 4096; Elasticsearch num_candidates ≤ 10,000). */
const MAX_KNN = 4_096;

/** A checked search request and how many candidates each side fetches before fusion. */
export interface SearchPlan {
  readonly scope: Scope;
  readonly limit: number;
  readonly range: Range;
  /** Live memories only (the default), or history too. False when `asOf` is set. */
  readonly live: boolean;
  /** The versions valid at this event time (validFrom <= asOf < validTo), or null: see `live`. */
  readonly asOf: number | null;
  /** The query vector to run kNN with; undefined when there is none or nothing to compare it with. */
  readonly queryVector: Float32Array | undefined;
  /** Whether the fused score weighs a semantic part (a query vector against stored vectors). */
  readonly semanticActive: boolean;
  /** Best BM25 matches fused. */
  readonly lexicalCandidates: number;
  /** k of the kNN search. */
  readonly semanticCandidates: number;
}

/**
 * Validates a search request against the store's embedder (`stored`, null when no vector was written).
 * No stored vectors yet: the query vector has nothing to compare with, so the search is lexical only.
 */
export function planSearch(request: SearchRequest, stored: StoredEmbedder | null): SearchPlan {
  const scope = assertScope(request.scope);
  const limit = checkLimit(request.limit);
  if (typeof request.text !== 'string') throw new InvalidInputError('text must be a string', 'text');
  const range = checkTimeRange(request.timeRange);
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
  const queryVector = stored === null ? undefined : vector;
  const asOf = request.asOf === undefined ? null : checkAsOf(request.asOf);
  return {
    scope,
    limit,
    range,
    live: asOf === null && request.includeSuperseded !== true,
    asOf,
    queryVector,
    semanticActive: queryVector !== undefined,
    lexicalCandidates: Math.max(limit * 4, 50),
    semanticCandidates: Math.min(Math.max(limit * 8, 100), MAX_KNN),
  };
}
