import type { ScoredWord } from '../../core/ports/token-scorer.js';
import { approxTokenCount } from '../../core/text/token-count.js';

/** How a tokenizer marks word starts: WordPiece (BERT: `##` continues a word) or SentencePiece (XLM-R: `▁` starts one). */
export type SubwordScheme = 'wordpiece' | 'sentencepiece';

/** keep-probability of a 2-label token classifier = softmax(logits)[1] (LLMLingua-2: label 1 = keep). */
export function keepProbability(dropLogit: number, keepLogit: number): number {
  const max = Math.max(dropLogit, keepLogit);
  const drop = Math.exp(dropLogit - max);
  const keep = Math.exp(keepLogit - max);
  return keep / (drop + keep);
}

function startsWord(token: string, scheme: SubwordScheme, first: boolean): boolean {
  if (first) return true;
  return scheme === 'wordpiece' ? !token.startsWith('##') : token.startsWith('▁');
}

function surface(token: string, scheme: SubwordScheme): string {
  if (scheme === 'wordpiece') return token.startsWith('##') ? token.slice(2) : token;
  return token.startsWith('▁') ? token.slice(1) : token;
}

/**
 * LLMLingua-2's token→word merge: a new word starts at a non-continuation token; the word's keep
 * probability is the mean of its subwords'. Special tokens must already be removed.
 */
export function mergeSubwords(
  tokens: readonly string[],
  probabilities: readonly number[],
  scheme: SubwordScheme,
): ScoredWord[] {
  const words: { text: string; sum: number; count: number }[] = [];
  tokens.forEach((token, i) => {
    const probability = probabilities[i] ?? 0;
    const current = words.at(-1);
    if (current === undefined || startsWord(token, scheme, false)) {
      words.push({ text: surface(token, scheme), sum: probability, count: 1 });
    } else {
      current.text += surface(token, scheme);
      current.sum += probability;
      current.count++;
    }
  });
  return words
    .filter((w) => w.text.length > 0)
    .map((w) => ({ word: w.text, keep: w.sum / w.count, tokens: Math.max(1, approxTokenCount(w.text)) }));
}

/**
 * Chunks of at most `maxTokens` (LLMLingua-2: 510 + 2 special tokens), ending at a sentence end (`.`,
 * newline) when there is one in the chunk and never inside a word, so every word is scored whole in one chunk.
 */
export function chunkTokens(
  tokens: readonly string[],
  maxTokens: number,
  scheme: SubwordScheme,
): [number, number][] {
  const chunks: [number, number][] = [];
  let start = 0;
  while (start < tokens.length) {
    let end = Math.min(tokens.length, start + maxTokens);
    if (end < tokens.length) {
      let cut = -1;
      for (let i = end; i > start; i--) {
        const previous = tokens[i - 1] ?? '';
        if (/^(▁)?[.\n]$/.test(previous) && startsWord(tokens[i] ?? '', scheme, false)) {
          cut = i;
          break;
        }
      }
      if (cut === -1) {
        // No sentence end: cut before the last word start in range.
        for (let i = end; i > start; i--) {
          if (startsWord(tokens[i] ?? '', scheme, false)) {
            cut = i;
            break;
          }
        }
      }
      end = cut > start ? cut : end;
    }
    chunks.push([start, end]);
    start = end;
  }
  return chunks;
}
