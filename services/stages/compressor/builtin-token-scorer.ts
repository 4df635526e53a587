import type { ScoredWord, TokenScorer } from '../../core/ports/token-scorer.js';
import { approxTokenCount } from '../../core/text/token-count.js';

/**
 * Keep-probabilities without a model: function words and fillers score low, numbers, names and long
 * content words score high. It stands in for an LLMLingua-2 model (same contract) until one is installed:
 * it mostly removes words that carry no retrievable content, so it rarely removes an answer.
 */
const functionWords = new Set(
  `a an the and or but nor so yet if then than that this these those there here of in on at to for from by with
  without about into onto over under up down out off as is am are was were be been being do does did doing
  have has had having will would shall should can could may might must it its it's itself i me my mine myself
  you your yours yourself we us our ours they them their theirs he him his she her hers what which who whom whose
  when where why how all any both each few more most other some such no not only own same too very just also
  again once ever even still really quite rather much many lot lots get got gets getting go going gone
  i'm you're we're they're i've you've we've i'll you'll that's there's it'd i'd don't doesn't didn't
  can't won't isn't aren't wasn't weren't`.split(/\s+/),
);
const fillers = new Set(
  'um uh uhm er erm hmm mm oh ah well yeah yep okay ok like wow haha lol hey hi hello'.split(' '),
);

const core = /[\p{L}\p{N}'’]+/u;

export function scoreWord(word: string, sentenceStart: boolean): number {
  const match = core.exec(word);
  if (match === null) return 0.05; // punctuation only
  const token = match[0].replace(/’/g, "'");
  const lower = token.toLowerCase();
  if (/\p{N}/u.test(token)) return 0.97;
  if (fillers.has(lower)) return 0.08;
  // Spread by length (a, i, to, the … below with, about, without): with one shared score every function
  // word would tie at the percentile and all go at once, keeping far fewer tokens than the rate asks.
  if (functionWords.has(lower)) return 0.12 + 0.16 * Math.min(1, (lower.length - 1) / 6);
  if (!sentenceStart && /^\p{Lu}/u.test(token)) return 0.93;
  // Content words: longer ones tend to be rarer and more specific.
  return 0.55 + 0.35 * Math.min(1, Math.max(0, token.length - 3) / 7);
}

export class BuiltinTokenScorer implements TokenScorer {
  readonly version = 'builtin-heuristic-v2';

  score(texts: readonly string[]): Promise<ScoredWord[][]> {
    return Promise.resolve(
      texts.map((text) => {
        const words = text.split(/\s+/).filter((w) => w.length > 0);
        let sentenceStart = true;
        return words.map((word) => {
          const scored: ScoredWord = {
            word,
            keep: scoreWord(word, sentenceStart),
            tokens: Math.max(1, approxTokenCount(word)),
          };
          sentenceStart = /[.!?]["')\]]*$/.test(word);
          return scored;
        });
      }),
    );
  }
}
