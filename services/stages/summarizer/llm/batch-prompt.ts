import type { Role, SegmentTurn, TopicSegment } from '../../../core/model/generated.js';
import { formatInstant, weekdayIn } from '../../../core/model/time.js';

/** One turn of a rendered batch, by the batch-local id the prompt shows for it. */
export interface BatchTurn {
  /** 1-based, in the order the turns are shown. */
  readonly id: number;
  readonly turn: SegmentTurn;
  readonly segment: TopicSegment;
}

export interface RenderedBatch {
  /** The user message: topic blocks, one line per turn. */
  readonly text: string;
  /** The turns shown, in id order (`turns[i].id === i + 1`). */
  readonly turns: readonly BatchTurn[];
}

/**
 * An STM batch as the extraction prompt shows it (LightMem's layout, reference §6.3): a `--- Topic N ---`
 * header per segment, then one line per turn of the memorized roles,
 * `[<ISO time with zone>, <weekday>] <id>.<speaker>: <text>`. Topics are numbered within the batch and ids
 * run 1…n over the whole batch (no process-wide counters, no user/assistant pairing: the id is the turn,
 * and `turns` maps it back). Segments with no memorized turn are left out. Turn text is the compressed
 * text the sensory stage kept.
 */
export function renderBatch(batch: readonly TopicSegment[], memorizeRoles: ReadonlySet<Role>): RenderedBatch {
  const lines: string[] = [];
  const turns: BatchTurn[] = [];
  let topic = 0;
  for (const segment of batch) {
    const shown = segment.turns.filter((t) => memorizeRoles.has(t.role) && t.text.trim() !== '');
    if (shown.length === 0) continue;
    lines.push(`--- Topic ${++topic} ---`);
    for (const turn of shown) {
      const id = turns.length + 1;
      turns.push({ id, turn, segment });
      const when = `${formatInstant(turn.occurredAt, turn.zoneOffset)}, ${weekdayIn(turn.occurredAt, turn.zoneOffset)}`;
      lines.push(`[${when}] ${id}.${oneLine(turn.speaker)}: ${oneLine(turn.text)}`);
    }
  }
  return { text: lines.join('\n'), turns };
}

/** Line breaks inside a turn would read as new lines of the input: they become spaces. */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
