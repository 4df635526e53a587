/**
 * The "no shared words" guard of the paraphrase fixtures: a question may not share a content word with
 * the text (or speaker) of its gold turn, so the only way to find the turn is by meaning. Deliberately
 * stricter than the store's porter-stemmed BM25: two words clash when their crude stems are equal, or when
 * one stem (3+ letters) starts the other ("trans" / "transgender", "fam" / "family").
 */

const stopwords = new Set(
  `a about above after again against all also am an and any are as at be because been before being below
  between both but by can could did do does doing down during each few for from further get got had has
  have having he her here hers herself him himself his how i if in into is it its itself just me more most
  my myself no nor not now of off on once only or other our ours ourselves out over own same she should so
  some such than that the their theirs them themselves then there these they this those through to too
  under until up very was we were what when where which while who whom why will with would you your yours
  yourself yourselves ever one ones lot lots really`
    .split(/\s+/)
    .filter((word) => word !== ''),
);

/** Lowercase words with punctuation stripped (apostrophes and their suffix dropped: "kids'" → "kids"). */
export function words(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/['’]\w*/g, '')
    .split(/[^a-z0-9]+/)
    .filter((word) => word !== '');
}

/** A crude stem: plural, -ed, -ing, -ion, -er, -ly and similar endings removed. */
export function stem(word: string): string {
  const rules: readonly [RegExp, string][] = [
    [/ies$/, 'y'],
    [/(ss|sh|ch|x)es$/, '$1'],
    [/([^s])s$/, '$1'],
    [/(ation|ition|ion|ment|ness|ful|ly|ing|ed|er|est|al|ive|ity)$/, ''],
    [/e$/, ''],
    [/(.)\1$/, '$1'],
  ];
  let out = word;
  for (const [pattern, replacement] of rules) {
    const next = out.replace(pattern, replacement);
    if (next.length >= 3) out = next;
  }
  return out;
}

/** Content words of a text: no stopwords, no single letters. */
export function contentWords(text: string): string[] {
  return words(text).filter((word) => word.length > 1 && !stopwords.has(word));
}

function clash(a: string, b: string): boolean {
  const [short, long] = a.length <= b.length ? [a, b] : [b, a];
  return short === long || (short.length >= 3 && long.startsWith(short));
}

/** The content words of `question` that clash with a content word of `text`, as `question~text` pairs. */
export function sharedContentWords(question: string, text: string): string[] {
  const textWords = contentWords(text);
  const shared: string[] = [];
  for (const q of new Set(contentWords(question))) {
    const hit = textWords.find((t) => clash(stem(q), stem(t)));
    if (hit !== undefined) shared.push(`${q}~${hit}`);
  }
  return shared;
}
