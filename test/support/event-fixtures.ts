import type { ConversationEvent } from '../../services/core/model/generated.js';

export const T0 = Date.UTC(2025, 0, 1);

/** A valid turn `i` of one conversation (tenant-a / user-1 / conv-1), one second apart. */
export function makeTurn(i: number, overrides: Partial<ConversationEvent> = {}): ConversationEvent {
  return {
    kind: 'turn',
    tenantId: 'tenant-a',
    userId: 'user-1',
    agentId: null,
    conversationId: 'conv-1',
    sessionId: 'sess-1',
    turnId: `t${i}`,
    seq: i,
    role: 'user',
    speaker: 'Ana',
    text: `message number ${i}`,
    occurredAt: T0 + i * 1000,
    zoneOffset: '+00:00',
    receivedAt: T0 + i * 1000,
    metadata: { source: 'contract' },
    ...overrides,
  };
}
