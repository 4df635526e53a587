import type { ConversationEvent } from './generated.js';

/**
 * Keys built from several ids (partition keys, idempotency keys). Ids may contain `/`, so each part is
 * escaped (`%` → `%25`, `/` → `%2F`) before the parts are joined with `/`: two different lists of parts
 * never give the same key. Parts without `/` or `%` (ids cannot contain `%`) are left as they are, so
 * keys of such ids are exactly what earlier versions wrote, `/`-joined: topics and data dirs written
 * before keep their keys and partitions.
 */
export function compositeKey(parts: readonly string[]): string {
  return parts.map(escapePart).join('/');
}

function escapePart(part: string): string {
  return part.includes('/') || part.includes('%') ? part.replaceAll('%', '%25').replaceAll('/', '%2F') : part;
}

/**
 * The idempotency key of an event: a turn is appended (and processed) once per tenant, user, conversation
 * and turn id. Control events have namespaces of their own, so that no turn id can stand in for them: an
 * idle flush is once per buffer state it closes (its id names the last turn), a session end once per id,
 * and the session ends lightmem adds name the session and the last turn they close
 * (`session-end:<session>@<turn>`): sending the same input again adds nothing, while a session reopened
 * with new turns and ended again is closed again.
 */
export function eventDedupKey(
  event: Pick<ConversationEvent, 'kind' | 'tenantId' | 'userId' | 'conversationId' | 'turnId'>,
): string {
  const turn = [event.tenantId, event.userId, event.conversationId, event.turnId];
  switch (event.kind) {
    case 'turn':
      return compositeKey(turn);
    case 'flush':
    case 'session_end':
      return compositeKey([...turn, event.kind]);
  }
}
