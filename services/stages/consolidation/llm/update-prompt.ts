import type { MemoryEntry } from '../../../core/model/generated.js';
import { formatInstant, weekdayIn } from '../../../core/model/time.js';
import type { UpdateCase } from '../decision.js';

/** One newer memory of a rendered case, by the case-local id the prompt shows for it. */
export interface RenderedSource {
  /** `S1`…`Sn`, in the order shown (oldest first). */
  readonly localId: string;
  readonly memory: MemoryEntry;
}

export interface RenderedCase {
  /** The user message: the target (`T`), then the sources (`S1`…), one line each. */
  readonly text: string;
  /** The sources shown, in id order (`sources[k - 1].localId === 'S' + k`). */
  readonly sources: readonly RenderedSource[];
}

/**
 * An update case as the update prompt shows it:
 *
 *     Target:
 *     T [<ISO time with zone>, <weekday>] <speaker>: <text>
 *
 *     Newer memories, oldest first:
 *     S1 [<ISO time with zone>, <weekday>] <speaker>: <text>
 *
 * Ids are case-local (no memory, tenant or user id reaches the model; `sources` maps them back). Sources
 * come in the case's order (oldest first, as UpdateCase promises). Memories show their `text`.
 */
export function renderCase(item: UpdateCase): RenderedCase {
  const sources = item.sources.map((source, index) => ({ localId: `S${index + 1}`, memory: source.memory }));
  const lines = [
    'Target:',
    line('T', item.target),
    '',
    'Newer memories, oldest first:',
    ...sources.map((source) => line(source.localId, source.memory)),
  ];
  return { text: lines.join('\n'), sources };
}

function line(localId: string, memory: MemoryEntry): string {
  const when = `${formatInstant(memory.occurredAt, memory.zoneOffset)}, ${weekdayIn(memory.occurredAt, memory.zoneOffset)}`;
  const speaker = oneLine(memory.speaker);
  return `${localId} [${when}] ${speaker === '' ? '' : `${speaker}: `}${oneLine(memory.text)}`;
}

/** Line breaks inside a memory would read as new lines of the input: they become spaces. */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
