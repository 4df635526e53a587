/**
 * The words of a search query, the same for every memory store. Query text is untrusted: it is cut into
 * words (runs of Unicode letters/digits, plus combining marks so accented words stay whole) and nothing
 * else survives, so no query syntax of any engine (FTS5 `"` `*` `NEAR`, Lucene `:` `~` `AND`) ever reaches
 * a parser as syntax.
 */

/** At most this many distinct words of a query are used: bounds the cost of an OR over many terms. */
export const MAX_QUERY_TERMS = 32;
/** Longer words are truncated: no real word is longer, and it bounds the size of the query. */
const MAX_TERM_LENGTH = 64;
/** Only the start of a very long query is read. */
const MAX_QUERY_CHARS = 4_000;

const wordPattern = /[\p{L}\p{N}][\p{L}\p{N}\p{M}]*/gu;

/**
 * English function words. They match most memories, so they barely move BM25, yet each one costs a pass
 * over its (long) posting list in every query. Dropped from queries unless nothing else is left; the index
 * keeps them, so a query made only of such words still works.
 */
const STOPWORDS = new Set(
  (
    'a about above after again against all am an and any are as at be because been before being below ' +
    'between both but by can could did do does doing down during each few for from further had has have ' +
    'having he her here hers herself him himself his how i if in into is it its itself just me more most ' +
    'my myself no nor not now of off on once only or other our ours ourselves out over own same she should ' +
    'so some such than that the their theirs them themselves then there these they this those through to ' +
    'too under until up very was we were what when where which while who whom why will with would you ' +
    'your yours yourself yourselves'
  ).split(' '),
);

/** The distinct (case-insensitive) words of `text`, in order of first appearance, stopwords dropped. */
export function queryTerms(text: string, max: number = MAX_QUERY_TERMS): string[] {
  const seen = new Set<string>();
  const terms: string[] = [];
  const stopwords: string[] = [];
  for (const match of text.slice(0, MAX_QUERY_CHARS).normalize('NFC').matchAll(wordPattern)) {
    const term = match[0].slice(0, MAX_TERM_LENGTH).toLowerCase();
    if (seen.has(term)) continue;
    seen.add(term);
    if (STOPWORDS.has(term)) stopwords.push(term);
    else terms.push(term);
    if (terms.length >= max) break;
  }
  return terms.length > 0 ? terms : stopwords.slice(0, max);
}
