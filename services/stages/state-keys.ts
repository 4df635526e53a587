/** State keys of per-conversation stage state. The separator cannot occur in ids (see assertId). */
const sep = '\u001f';

export function conversationStateKey(
  prefix: string,
  record: { tenantId: string; userId: string; conversationId: string },
): string {
  return [prefix, record.tenantId, record.userId, record.conversationId].join(sep);
}

export function turnStateKey(
  prefix: string,
  record: { tenantId: string; userId: string; conversationId: string; turnId: string },
): string {
  return [prefix, record.tenantId, record.userId, record.conversationId, record.turnId].join(sep);
}

export function statePrefix(prefix: string): string {
  return `${prefix}${sep}`;
}

/**
 * The start of every key of one user under a prefix (`<prefix>␟<tenant>␟<user>␟`): a user's keys are one
 * contiguous range of each prefix, whatever conversation or turn follows (erasure deletes them by range).
 */
export function userStatePrefix(prefix: string, tenantId: string, userId: string): string {
  return [prefix, tenantId, userId, ''].join(sep);
}

/** The prefix of a state key (the part before the first separator), or null for a key without one. */
export function stateKeyPrefix(key: string): string | null {
  const end = key.indexOf(sep);
  return end < 0 ? null : key.slice(0, end);
}

/** The tenant and user a per-conversation or per-turn state key belongs to, or null for other keys. */
export function stateKeyOwner(key: string): { tenantId: string; userId: string } | null {
  const parts = key.split(sep);
  const [, tenantId, userId] = parts;
  if (parts.length < 4 || tenantId === undefined || userId === undefined) return null;
  return { tenantId, userId };
}
