/**
 * What a dead letter keeps of the input it could not take: enough to see what was wrong (the reason and
 * field are beside it), never the whole of a large or repeated bad input. A flood of bad events then
 * costs a bounded amount of storage per event; the size cap and retention of the dead-letter topic
 * bound the rest (config `deadLetters`).
 */
export const deadLetterExcerptChars = 1024;

export function payloadExcerpt(text: string, maxChars = deadLetterExcerptChars): string {
  if (text.length <= maxChars) return text;
  return `${text.slice(0, maxChars)}… (${text.length - maxChars} more characters not kept)`;
}
