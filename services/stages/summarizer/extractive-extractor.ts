import type { ExtractedMemory, ExtractionResult, Extractor } from '../../core/ports/extractor.js';
import type { Role, SegmentTurn, TopicSegment } from '../../core/model/generated.js';
import { turnChunks } from './sentence-chunks.js';

export type ExtractiveGranularity = 'turn' | 'segment' | 'both';

export interface ExtractiveSettings {
  /** Whose turns become memories. */
  readonly memorizeRoles: ReadonlySet<Role>;
  /** turn: one memory per turn; segment: one per topic segment; both. */
  readonly granularity: ExtractiveGranularity;
  /** A turn longer than this many words becomes one memory per chunk of sentences (0: one per turn). */
  readonly splitWords: number;
}

/**
 * An Extractor that needs no LLM: memories are the compressed text of the turns themselves, with their
 * speaker, time and source turn ids, so everything works offline and every memory is verbatim evidence.
 */
export class ExtractiveExtractor implements Extractor {
  readonly version: string;
  readonly promptHash = null;

  constructor(private readonly settings: ExtractiveSettings) {
    const split = settings.splitWords > 0 ? `;split${settings.splitWords}` : '';
    this.version = `extractive-v1(${settings.granularity};${[...settings.memorizeRoles].sort().join(',')}${split})`;
  }

  extract(batch: readonly TopicSegment[]): Promise<ExtractionResult> {
    const memories: ExtractedMemory[] = [];
    for (const segment of batch) {
      const turns = segment.turns.filter(
        (t) => this.settings.memorizeRoles.has(t.role) && t.text.trim() !== '',
      );
      if (turns.length === 0) continue;
      if (this.settings.granularity !== 'segment') {
        for (const turn of turns) memories.push(...turnMemories(segment, turn, this.settings.splitWords));
      }
      if (this.settings.granularity !== 'turn') memories.push(segmentMemory(segment, turns));
    }
    return Promise.resolve({ memories, problems: [] });
  }
}

/** The memories of one turn: the turn itself, or one per chunk of sentences when it is long. */
function turnMemories(segment: TopicSegment, turn: SegmentTurn, splitWords: number): ExtractedMemory[] {
  return turnChunks(turn.text, turn.sourceText, splitWords).map((chunk) => ({
    text: chunk.text,
    kind: 'fact',
    topicId: segment.segmentId,
    speaker: turn.speaker,
    sourceTurnIds: [turn.turnId],
    occurredAt: turn.occurredAt,
    zoneOffset: turn.zoneOffset,
    sourceText: chunk.sourceText,
  }));
}

function segmentMemory(segment: TopicSegment, turns: readonly SegmentTurn[]): ExtractedMemory {
  const [first] = turns;
  const speakers = [...new Set(turns.map((t) => t.speaker))];
  return {
    text: turns.map((t) => `${t.speaker}: ${t.text}`).join('\n'),
    kind: 'summary',
    topicId: segment.segmentId,
    speaker: speakers.join(', '),
    sourceTurnIds: turns.map((t) => t.turnId),
    occurredAt: first?.occurredAt ?? 0,
    zoneOffset: first?.zoneOffset ?? '+00:00',
    sourceText: turns.some((t) => t.sourceText !== null)
      ? turns.map((t) => `${t.speaker}: ${t.sourceText ?? t.text}`).join('\n')
      : null,
  };
}
