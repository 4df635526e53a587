/**
 * Approximate LLM token count without a tokenizer: one token per short word or punctuation mark, longer
 * words cost one token per ~6 characters (close to BPE tokenizers on English text). Used for buffer
 * capacities until a real tokenizer is installed.
 */
const piece = /[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu;

export function approxTokenCount(text: string): number {
  let tokens = 0;
  for (const match of text.matchAll(piece)) {
    const length = match[0].length;
    tokens += length <= 6 ? 1 : Math.ceil(length / 6);
  }
  return tokens;
}
