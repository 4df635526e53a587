import type { MemoryView } from '../app/memory-search.js';

/** What of a memory goes into an answer prompt. */
export type PromptMemory = Pick<MemoryView, 'text' | 'kind' | 'speaker' | 'occurredAt'>;

/**
 * The exact line an answer prompt holds for one memory: its time (minutes, in the zone it was recorded
 * in) and speaker before the text, e.g. `[2023-05-08 13:56] Caroline: I went to a support group.`
 * Summaries of several turns already name the speaker on each line, so they get the time only. Token
 * budgets are counted on this text, so what is measured is what a prompt would cost.
 */
export function promptText(memory: PromptMemory): string {
  const time = promptTime(memory.occurredAt);
  return memory.kind === 'summary'
    ? `[${time}] ${memory.text}`
    : `[${time}] ${memory.speaker}: ${memory.text}`;
}

/** `2023-05-08T13:56:05+02:00` → `2023-05-08 13:56` (the local time as recorded). */
function promptTime(occurredAt: string): string {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(occurredAt);
  return match === null ? occurredAt : `${match[1] ?? ''} ${match[2] ?? ''}`;
}
