import type { MemoryStore, SearchHit } from '../core/ports/memory-store.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { MemoryEntry, MemoryKind } from '../core/model/generated.js';
import { assertScope, type Scope } from '../core/model/scope.js';
import { formatInstant } from '../core/model/time.js';
import { InvalidInputError } from '../core/errors.js';

export interface SearchQuery {
  readonly scope: Scope;
  readonly query: string;
  readonly limit: number;
  readonly from?: number | undefined;
  readonly to?: number | undefined;
  readonly includeSuperseded?: boolean | undefined;
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
  readonly score: number;
  readonly lexical: number | null;
  readonly semantic: number | null;
}

export const maxSearchLimit = 200;
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

/** The search path of every front end (CLI, HTTP, bench): validate, embed the query, search the store. */
export class MemorySearch {
  constructor(
    private readonly store: MemoryStore,
    private readonly embedder: Embedder | null,
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
    const [vector] = this.embedder === null ? [] : await this.embedder.embed([query.query]);
    const hits: SearchHit[] = await this.store.search({
      scope: query.scope,
      text: query.query,
      vector,
      embedderId: this.embedder?.id,
      limit: query.limit,
      timeRange: { from: query.from, to: query.to },
      includeSuperseded: query.includeSuperseded,
    });
    return hits.map((hit) => ({
      ...memoryView(hit.memory),
      score: hit.score,
      lexical: hit.lexical,
      semantic: hit.semantic,
    }));
  }
}
