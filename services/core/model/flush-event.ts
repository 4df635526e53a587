import type { AppendRecord } from '../ports/event-log.js';
import type { ConversationEvent } from './generated.js';
import { Topics, conversationKey } from './topics.js';
import { eventDedupKey } from './keys.js';

/** The conversation a control event is for. */
export interface ConversationScope {
  readonly tenantId: string;
  readonly userId: string;
  readonly agentId: string | null;
  readonly conversationId: string;
  readonly sessionId: string;
}

/**
 * A `flush` control event for the raw log, written by lightmem itself: its turn id names why and after
 * what, so the same flush is appended once however often a job decides it (its idempotency key).
 */
export function flushEvent(
  scope: ConversationScope,
  options: { turnId: string; seq: number; now: number; reason: string },
): AppendRecord<typeof Topics.raw> {
  const event: ConversationEvent = {
    kind: 'flush',
    tenantId: scope.tenantId,
    userId: scope.userId,
    agentId: scope.agentId,
    conversationId: scope.conversationId,
    sessionId: scope.sessionId,
    turnId: options.turnId,
    seq: options.seq,
    role: 'system',
    speaker: 'lightmem',
    text: '',
    occurredAt: options.now,
    zoneOffset: '+00:00',
    receivedAt: options.now,
    metadata: { reason: options.reason },
  };
  return { key: conversationKey(event), value: event, dedupKey: eventDedupKey(event) };
}
