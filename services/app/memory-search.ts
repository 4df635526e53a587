import type { MemoryStore, SearchHit } from '../core/ports/memory-store.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { MemoryEntry, MemoryKind } from '../core/model/generated.js';
import { assertScope, type Scope } from '../core/model/scope.js';
import { formatInstant } from '../core/model/time.js';
import { InvalidInputError } from '../core/errors.js';
import { applyCues, defaultCueWeights, type CueWeights } from './query-cues.js';
import { applySessionContext } from './session-context.js';

export interface SearchQuery {
  readonly scope: Scope;
  readonly query: string;
  readonly limit: number;
  readonly from?: number | undefined;
  readonly to?: number | undefined;
  readonly includeSuperseded?: boolean | undefined;
  /** The versions valid at this instant (epoch ms), superseded since or not. */
  readonly asOf?: number | undefined;
}

/** A retrieved memory as callers see it: structured, with provenance. */
export interface MemoryView {
  readonly id: string;
  readonly text: string;
  readonly kind: MemoryKind;
  readonly speaker: string;
  readonly occurredAt: string;
  readonly tenantId: string;
  readonly userId: string;
  readonly agentId: string | null;
  readonly conversationId: string;
  readonly sessionId: string;
  readonly topicId: string;
  readonly sourceTurnIds: readonly string[];
  readonly validFrom: string;
  readonly validTo: string | null;
  readonly supersededBy: string | null;
}

export interface SearchResult extends MemoryView {
  /**
   * The fused score, re-scored by the query's cues when it has any (query-cues.ts) and by the other hits of
   * its session (session-context.ts).
   */
  readonly score: number;
  /** The scaled BM25 and kNN parts of the fused score. */
  readonly lexical: number | null;
  readonly semantic: number | null;
  /** Cues of the query this memory matched (`speaker:<name>`, `month:<yyyy-mm>`). */
  readonly cues: readonly string[];
}

export const maxSearchLimit = 200;
/** Candidates beyond the limit that a cue may lift into the results. */
const cuePool = 20;
const maxQueryChars = 4096;

export function memoryView(entry: MemoryEntry): MemoryView {
  return {
    id: entry.id,
    text: entry.text,
    kind: entry.kind,
    speaker: entry.speaker,
    occurredAt: formatInstant(entry.occurredAt, entry.zoneOffset),
    tenantId: entry.tenantId,
    userId: entry.userId,
    agentId: entry.agentId,
    conversationId: entry.conversationId,
    sessionId: entry.sessionId,
    topicId: entry.topicId,
    sourceTurnIds: entry.sourceTurnIds,
    validFrom: formatInstant(entry.validFrom, entry.zoneOffset),
    validTo: entry.validTo === null ? null : formatInstant(entry.validTo, entry.zoneOffset),
    supersededBy: entry.supersededBy,
  };
}

/**
 * The search path of every front end (CLI, HTTP, bench): validate, embed the query, search the store,
 * re-score the candidates by the query's cues and by their sessions' other hits, and keep the best `limit`.
 */
export class MemorySearch {
  constructor(
    private readonly store: MemoryStore,
    private readonly embedder: Embedder | null,
    private readonly cues: CueWeights = defaultCueWeights,
  ) {}

  async search(query: SearchQuery): Promise<SearchResult[]> {
    assertScope(query.scope);
    if (query.query.trim() === '') throw new InvalidInputError('query must not be empty', 'query');
    if (query.query.length > maxQueryChars) {
      throw new InvalidInputError(
        `query is ${query.query.length} characters; the limit is ${maxQueryChars}`,
        'query',
      );
    }
    if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > maxSearchLimit) {
      throw new InvalidInputError(`limit must be an integer from 1 to ${maxSearchLimit}`, 'limit');
    }
    const [vector] =
      this.embedder === null
        ? []
        : await this.embedder.embed([`${this.embedder.queryPrefix ?? ''}${query.query}`]);
    const hits: SearchHit[] = await this.store.search({
      scope: query.scope,
      text: query.query,
      vector,
      embedderId: this.embedder?.id,
      // A few more candidates than asked for, so that a cue can lift a memory into the results.
      limit: Math.min(maxSearchLimit, query.limit + cuePool),
      timeRange: { from: query.from, to: query.to },
      includeSuperseded: query.includeSuperseded,
      asOf: query.asOf,
    });
    const cued = applySessionContext(
      applyCues(query.query, hits, (hit) => ({ score: hit.score, entry: hit.memory }), this.cues),
      (hit) => ({
        session: `${hit.memory.conversationId}\u0000${hit.memory.sessionId}`,
        turn: hit.memory.sourceTurnIds.join('\u0000'),
      }),
      this.cues.sessionBoost ?? 0,
    );
    return cued.slice(0, query.limit).map(({ item: hit, score, cues }) => ({
      ...memoryView(hit.memory),
      score,
      lexical: hit.lexical,
      semantic: hit.semantic,
      cues,
    }));
  }
}
