import type { DeadLetter } from './generated.js';
import { Topics, type TopicName, type TopicValues } from './topics.js';

/**
 * The data subject a log record is about: the (tenant, user) whose erasure removes it. `tenantId` is null
 * when the record does not say (a dead letter of bad input sent without a tenant in it); `userId` is null
 * for records about no one user (a tenant-wide memory op, a dead letter that names no user).
 */
export interface RecordOwner {
  readonly tenantId: string | null;
  readonly userId: string | null;
}

const nobody: RecordOwner = { tenantId: null, userId: null };

/**
 * Looks up the owner of the record a dead letter was made from (topic and offset), while that record is
 * still in the log; undefined when it is not (pruned, erased) or the topic is not one of the log's.
 */
export type SourceOwnerLookup = (topic: TopicName, offset: number) => RecordOwner | undefined;

/**
 * Who a record belongs to, from its value: every topic's value names its tenant and user (a compressed
 * turn in its event, a memory op in `userId` or its replacements). A dead letter belongs to the owner of
 * its source record when the log still has it, else to the tenant and user its payload names.
 */
export function recordOwner<T extends TopicName>(
  topic: T,
  value: TopicValues[T],
  sourceOwner: SourceOwnerLookup = () => undefined,
): RecordOwner {
  // Narrowed by topic: TypeScript cannot correlate `topic` and `value`, so each branch names its type.
  switch (topic) {
    case Topics.raw:
    case Topics.segments:
    case Topics.memories: {
      const owned = value as TopicValues['lightmem.turns.raw' | 'lightmem.segments' | 'lightmem.memories'];
      return { tenantId: owned.tenantId, userId: owned.userId };
    }
    case Topics.compressed: {
      const { event } = value as TopicValues['lightmem.turns.compressed'];
      return { tenantId: event.tenantId, userId: event.userId };
    }
    case Topics.memoryOps: {
      const op = value as TopicValues['lightmem.memory-ops'];
      return { tenantId: op.tenantId, userId: op.userId ?? op.replacements[0]?.userId ?? null };
    }
    case Topics.deadLetters:
      return deadLetterOwner(value as DeadLetter, sourceOwner);
    default:
      return nobody;
  }
}

const topicNames = new Set<string>(Object.values(Topics));

function isTopicName(name: string): name is TopicName {
  return topicNames.has(name);
}

function deadLetterOwner(letter: DeadLetter, sourceOwner: SourceOwnerLookup): RecordOwner {
  if (letter.sourceOffset !== null && isTopicName(letter.sourceTopic)) {
    const owner = sourceOwner(letter.sourceTopic, letter.sourceOffset);
    if (owner !== undefined && owner.userId !== null) return owner;
  }
  return payloadOwner(letter.payload);
}

/**
 * The tenant and user a dead letter's payload names: the original record as JSON (possibly cut at the
 * excerpt limit, so not always parseable) or the raw input line. The first `"tenantId"` and `"userId"`
 * string fields win: every record type puts them (or its event, which has them) before any free text.
 */
export function payloadOwner(payload: string): RecordOwner {
  return { tenantId: firstStringField(payload, 'tenantId'), userId: firstStringField(payload, 'userId') };
}

function firstStringField(text: string, field: string): string | null {
  const match = new RegExp(`"${field}"\\s*:\\s*("(?:[^"\\\\]|\\\\.)*")`).exec(text);
  const literal = match?.[1];
  if (literal === undefined) return null;
  try {
    const value: unknown = JSON.parse(literal);
    return typeof value === 'string' && value.length > 0 ? value : null;
  } catch {
    return null;
  }
}
