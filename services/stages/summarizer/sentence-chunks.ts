/**
 * Long turns cut into prompt-sized memories. An assistant's 300-word explanation or an agent's script is
 * one turn, but a question needs one or two of its sentences: as one memory it fills a prompt budget with
 * the rest. A turn over `maxWords` words is cut at sentence ends (and line breaks) into chunks of at most
 * `maxWords` words each (a longer sentence is cut by words), each chunk a memory that cites the same turn.
 *
 * The compressor keeps a subsequence of the turn's whitespace-separated words (sensory-compressor.ts), so
 * each chunk's compressed text is the kept words that fall inside it: the kept words are aligned onto the
 * source words in order. A turn whose compressed words cannot be aligned stays one memory.
 */

export interface TurnChunk {
  /** What the memory shows: the compressed words of the chunk (the chunk's source words when uncompressed). */
  readonly text: string;
  /** The chunk's uncompressed words, what search matches on; null when the turn was not compressed. */
  readonly sourceText: string | null;
}

interface SourceWord {
  readonly word: string;
  /** A sentence may end after this word (sentence punctuation, or a line break follows). */
  readonly boundary: boolean;
}

const sentenceEnd = /[.!?…]+["'”’)\]]*$/u;

function sourceWords(text: string): SourceWord[] {
  const words: SourceWord[] = [];
  for (const match of text.matchAll(/(\S+)(\s*)/gu)) {
    const word = match[1] ?? '';
    const space = match[2] ?? '';
    words.push({ word, boundary: sentenceEnd.test(word) || space.includes('\n') });
  }
  return words;
}

/** Word ranges [start, end) of the chunks: whole sentences packed up to `maxWords`, long sentences cut. */
function chunkRanges(words: readonly SourceWord[], maxWords: number): [number, number][] {
  const sentences: [number, number][] = [];
  let start = 0;
  words.forEach((w, i) => {
    if (w.boundary || i === words.length - 1) {
      for (let at = start; at <= i; at += maxWords) sentences.push([at, Math.min(i + 1, at + maxWords)]);
      start = i + 1;
    }
  });
  const chunks: [number, number][] = [];
  for (const [from, to] of sentences) {
    const last = chunks[chunks.length - 1];
    if (last !== undefined && last[1] === from && to - last[0] <= maxWords) last[1] = to;
    else chunks.push([from, to]);
  }
  return chunks;
}

/**
 * For each kept word, the index of the source word it is, matching in order; null when one cannot be
 * found (the texts are not a word subsequence of one another).
 */
function align(kept: readonly string[], source: readonly SourceWord[]): number[] | null {
  const at: number[] = [];
  let next = 0;
  for (const word of kept) {
    while (next < source.length && source[next]?.word !== word) next++;
    if (next >= source.length) return null;
    at.push(next++);
  }
  return at;
}

/**
 * The chunks of one turn: `text` as the compressor left it, `sourceText` the turn's words before compression
 * (null: not compressed). One chunk, the turn as it is, when it is not longer than `maxWords` words, when
 * `maxWords` is 0 (off), or when the compressed words do not align with the source.
 */
export function turnChunks(text: string, sourceText: string | null, maxWords: number): TurnChunk[] {
  const whole = [{ text, sourceText }];
  if (maxWords <= 0) return whole;
  const source = sourceWords(sourceText ?? text);
  if (source.length <= maxWords) return whole;
  const ranges = chunkRanges(source, maxWords);
  if (ranges.length <= 1) return whole;
  const join = (from: number, to: number): string =>
    source
      .slice(from, to)
      .map((w) => w.word)
      .join(' ');
  if (sourceText === null) return ranges.map(([from, to]) => ({ text: join(from, to), sourceText: null }));
  const kept = text.split(/\s+/u).filter((w) => w !== '');
  const positions = align(kept, source);
  if (positions === null) return whole;
  const chunks: TurnChunk[] = [];
  for (const [from, to] of ranges) {
    const words = kept.filter((_, i) => {
      const p = positions[i] ?? -1;
      return p >= from && p < to;
    });
    // A chunk the compressor kept nothing of is what it judged worth least: no memory.
    if (words.length > 0) chunks.push({ text: words.join(' '), sourceText: join(from, to) });
  }
  return chunks.length === 0 ? whole : chunks;
}
