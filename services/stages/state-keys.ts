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
