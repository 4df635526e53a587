import { scopeAllows, type ApiKeyScope } from '../core/api-keys.js';
import { LightmemError } from '../core/errors.js';

/**
 * Who is asking: the tenant comes from the API key and only from it, so every read and write of the
 * service is confined to it; the key's scopes say what it may do.
 */
export interface Caller {
  readonly tenantId: string;
  /** The API key (null: the machine's operator at the command line). */
  readonly keyId: string | null;
  readonly scopes: readonly ApiKeyScope[];
}

/** The operator at the command line of the machine (`lightmem search --tenant T`): every scope, one tenant. */
export function operatorOf(tenantId: string): Caller {
  return { tenantId, keyId: null, scopes: ['admin'] };
}

/** Refuses (403) a caller whose key lacks the scope. */
export function requireScope(caller: Caller, needed: ApiKeyScope): void {
  if (!scopeAllows(caller.scopes, needed)) {
    throw new LightmemError('forbidden', `this API key lacks the ${needed} scope`);
  }
}

/**
 * The caller's tenant. A request may name it (old clients send `tenantId`), but naming another one is
 * refused (403), never obeyed and never silently ignored.
 */
export function tenantOf(caller: Caller, named: unknown, field = 'tenantId'): string {
  if (named !== undefined && named !== null && named !== caller.tenantId) {
    throw new LightmemError('forbidden', `${field} names another tenant than this API key's`, { field });
  }
  return caller.tenantId;
}
