import { InvalidInputError } from '../errors.js';

/**
 * Who a read or write is about. `tenantId` is required by type on every store operation: there is no
 * code path that reads or writes memories without a tenant.
 */
export interface Scope {
  readonly tenantId: string;
  readonly userId?: string | undefined;
  readonly agentId?: string | undefined;
  readonly conversationId?: string | undefined;
  readonly sessionId?: string | undefined;
}

/** What an id may be (tenant, user, conversation, turn, memory ids). */
export const idPattern = /^[\p{L}\p{N}_.:@\-/#]{1,200}$/u;

/** Ids are opaque but bounded: letters, digits and `_ . : @ - / #`, at most 200 characters. */
export function assertId(value: string, field: string): string {
  if (!idPattern.test(value)) {
    throw new InvalidInputError(
      `${field} must be 1–200 characters of letters, digits or _ . : @ - / # (got ${JSON.stringify(value.slice(0, 60))})`,
      field,
    );
  }
  return value;
}

export function assertScope(scope: Scope): Scope {
  assertId(scope.tenantId, 'tenantId');
  for (const key of ['userId', 'agentId', 'conversationId', 'sessionId'] as const) {
    const value = scope[key];
    if (value !== undefined) assertId(value, key);
  }
  return scope;
}
