import type { EventLog } from '../core/ports/event-log.js';
import type { ConversationEvent } from '../core/model/generated.js';
import { compositeKey } from '../core/model/keys.js';
import { conversationStateKey } from '../stages/state-keys.js';
import { SensoryBufferState } from '../stages/segmenter/sensory-buffer.js';
import { sensoryStatePrefix } from '../stages/segmenter/segmenter-stage.js';
import { StmBufferState } from '../stages/summarizer/stm-buffer.js';
import { stmStatePrefix } from '../stages/summarizer/summarizer-stage.js';

type TurnRef = Pick<ConversationEvent, 'tenantId' | 'userId' | 'conversationId' | 'turnId'>;

/**
 * How many of these turns are still held in a stage's buffer (the segmenter's sensory buffer or the
 * summarizer's short-term buffer): processed by the log's measure, but not yet memories, because their
 * session is open. Read after the pipeline has caught up, zero means every one of them is searchable.
 */
export async function bufferedTurns(log: EventLog, turns: readonly TurnRef[]): Promise<number> {
  const byConversation = new Map<string, { ref: TurnRef; ids: Set<string> }>();
  for (const turn of turns) {
    const key = compositeKey([turn.tenantId, turn.userId, turn.conversationId]);
    const entry = byConversation.get(key) ?? { ref: turn, ids: new Set<string>() };
    entry.ids.add(turn.turnId);
    byConversation.set(key, entry);
  }
  const sensory = log.stateOf('segmenter');
  const stm = log.stateOf('summarizer');
  let held = 0;
  for (const { ref, ids } of byConversation.values()) {
    const buffered = new Set<string>();
    const rawSensory = await sensory.get(conversationStateKey(sensoryStatePrefix, ref));
    if (rawSensory !== undefined) {
      for (const turn of SensoryBufferState.parse(JSON.parse(rawSensory)).turns) buffered.add(turn.turnId);
    }
    const rawStm = await stm.get(conversationStateKey(stmStatePrefix, ref));
    if (rawStm !== undefined) {
      for (const segment of StmBufferState.parse(JSON.parse(rawStm)).segments)
        for (const turn of segment.turns) buffered.add(turn.turnId);
    }
    for (const id of ids) if (buffered.has(id)) held++;
  }
  return held;
}
