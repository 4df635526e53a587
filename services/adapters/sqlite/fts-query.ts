import { createHash } from 'node:crypto';
import type { MemoryEntry } from '../../core/model/generated.js';
import type { Scope } from '../../core/model/scope.js';
import { queryTerms } from '../memory/query-terms.js';

/**
 * FTS5 query building for the SQLite memory store.
 *
 * Query text is untrusted: only its words survive (see queryTerms), so FTS5 syntax (`"`, `*`, `^`, `:`,
 * `(`, `NEAR`, column filters) never reaches the parser as syntax. Every word is emitted as a quoted
 * string, and quoted strings are plain tokens to FTS5 even when they read `OR` or `NEAR`.
 */

/**
 * One opaque token per scope level, stored in the `scope` column of the FTS table, so a MATCH intersects
 * the scope inside the full-text index itself instead of ranking the whole tenant and filtering later.
 * Tokens are hashes of (level, tenant, value): they contain no user text, they cannot be produced by a
 * query (query words are confined to the text and speaker columns), and a user id that is equal in two
 * tenants yields two different tokens. Letters and hex digits only, so the unicode61 tokenizer keeps each
 * one whole; the trailing digit keeps the porter stemmer (which only strips letter suffixes) off it.
 */
function scopeToken(level: 't' | 'u' | 'a' | 'c' | 's', tenantId: string, value: string): string {
  // \u0000 cannot occur in ids (see assertId), so the parts cannot run into each other.
  const hex = createHash('sha256').update(`${level}\u0000${tenantId}\u0000${value}`).digest('hex');
  return `${level}${hex.slice(0, 20)}0`;
}

/** One token per scope field that is set (the tenant always). */
export function scopeTokens(scope: Scope): string[] {
  const { tenantId } = scope;
  const tokens = [scopeToken('t', tenantId, tenantId)];
  if (scope.userId !== undefined) tokens.push(scopeToken('u', tenantId, scope.userId));
  if (scope.agentId !== undefined) tokens.push(scopeToken('a', tenantId, scope.agentId));
  if (scope.conversationId !== undefined) tokens.push(scopeToken('c', tenantId, scope.conversationId));
  if (scope.sessionId !== undefined) tokens.push(scopeToken('s', tenantId, scope.sessionId));
  return tokens;
}

/**
 * The tokens a query must match. Every token hashes the tenant in, so when a narrower one is present the
 * tenant token adds nothing, and leaving it out saves bm25() a pass over the whole tenant's doclist (it
 * counts every phrase of the query to weigh it).
 */
export function scopeMatchTokens(scope: Scope): string[] {
  const tokens = scopeTokens(scope);
  return tokens.length > 1 ? tokens.slice(1) : tokens;
}

/** The `scope` column value of a memory: every token a query for one of its scopes may ask for. */
export function entryScopeColumn(entry: MemoryEntry): string {
  return scopeTokens({
    tenantId: entry.tenantId,
    userId: entry.userId,
    agentId: entry.agentId ?? undefined,
    conversationId: entry.conversationId,
    sessionId: entry.sessionId,
  }).join(' ');
}

/**
 * `({text speaker}: ("w1" OR "w2")) AND scope: "t…" AND scope: "u…"`, or null when the query has no
 * usable word (the lexical side then finds nothing).
 */
export function buildMatchExpression(text: string, scope: Scope): string | null {
  const terms = queryTerms(text);
  if (terms.length === 0) return null;
  // Terms hold letters, digits and marks only, so wrapping them in double quotes needs no escaping.
  const words = terms.map((term) => `"${term}"`).join(' OR ');
  const scopePart = scopeMatchTokens(scope)
    .map((token) => `scope: "${token}"`)
    .join(' AND ');
  return `({text speaker}: (${words})) AND ${scopePart}`;
}
