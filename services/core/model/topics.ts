import { compositeKey } from './keys.js';
import type {
  CompressedTurn,
  ConversationEvent,
  DeadLetter,
  MemoryEntry,
  MemoryOp,
  TopicSegment,
  AvroSchemaName,
} from './generated.js';

/** Topic name → the Avro record type its values carry. */
export interface TopicValues {
  'lightmem.turns.raw': ConversationEvent;
  'lightmem.turns.compressed': CompressedTurn;
  'lightmem.segments': TopicSegment;
  'lightmem.memories': MemoryEntry;
  'lightmem.memory-ops': MemoryOp;
  'lightmem.dead-letters': DeadLetter;
}
export type TopicName = keyof TopicValues;

export const topicSchemas: { readonly [T in TopicName]: AvroSchemaName } = {
  'lightmem.turns.raw': 'ConversationEvent',
  'lightmem.turns.compressed': 'CompressedTurn',
  'lightmem.segments': 'TopicSegment',
  'lightmem.memories': 'MemoryEntry',
  'lightmem.memory-ops': 'MemoryOp',
  'lightmem.dead-letters': 'DeadLetter',
};

export const Topics = {
  raw: 'lightmem.turns.raw',
  compressed: 'lightmem.turns.compressed',
  segments: 'lightmem.segments',
  memories: 'lightmem.memories',
  memoryOps: 'lightmem.memory-ops',
  deadLetters: 'lightmem.dead-letters',
} as const satisfies Record<string, TopicName>;

/** Partition key of everything about one conversation: keeps its records in order. */
export function conversationKey(record: { tenantId: string; conversationId: string }): string {
  return compositeKey([record.tenantId, record.conversationId]);
}
