/**
 * Typed errors. Every error says whether retrying can help (`retryable`), carries a stable `code`, and
 * keeps its `cause`. Stages dead-letter non-retryable errors and retry retryable ones with backoff.
 */
export type ErrorCode =
  | 'invalid_input'
  | 'not_found'
  | 'scope_required'
  | 'conflict'
  | 'model_mismatch'
  | 'storage_unavailable'
  | 'storage_corrupt'
  | 'config_invalid'
  | 'busy'
  | 'retries_exhausted'
  /** No credentials, or credentials that are not valid (HTTP 401). */
  | 'unauthorized'
  /** Valid credentials that do not allow this (another tenant's data, a scope the key lacks): HTTP 403. */
  | 'forbidden'
  /** Too many requests for this key or for the server now: retry after a while (HTTP 429/503). */
  | 'rate_limited'
  /** The server is at its bound of concurrent requests or buffered bodies: retry shortly (HTTP 503). */
  | 'overloaded'
  | 'method_not_allowed'
  | 'unsupported_media_type'
  | 'payload_too_large'
  /** Not possible in this mode or configuration (yet). */
  | 'unsupported'
  | 'internal';

export class LightmemError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Name of the offending input field, when there is one (dotted path). */
  readonly field: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { retryable?: boolean; field?: string | undefined; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LightmemError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.field = options.field;
  }
}

/** Input that can never be processed as it is (terminal, dead-lettered). */
export class InvalidInputError extends LightmemError {
  constructor(message: string, field?: string, cause?: unknown) {
    super('invalid_input', message, { field, cause, retryable: false });
    this.name = 'InvalidInputError';
  }
}

/** A transient failure of a dependency (storage locked, server down). Retry with backoff. */
export class UnavailableError extends LightmemError {
  constructor(message: string, cause?: unknown) {
    super('storage_unavailable', message, { cause, retryable: true });
    this.name = 'UnavailableError';
  }
}

/**
 * Another process holds the lock of a store past the wait allowed for it (SQLite's busy timeout).
 * Retry after `retryAfterMs`; the HTTP API answers 503 with Retry-After.
 */
export class StorageBusyError extends LightmemError {
  constructor(
    message: string,
    cause?: unknown,
    readonly retryAfterMs = 1_000,
  ) {
    super('storage_unavailable', message, { cause, retryable: true });
    this.name = 'StorageBusyError';
  }
}

/**
 * A batch (or call) that kept failing with retryable errors until its attempts ran out. Still retryable:
 * the work is not dropped; whoever runs it (a stage's supervisor) tries again later. The last failure is
 * its cause.
 */
export class RetriesExhaustedError extends LightmemError {
  constructor(
    message: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    super('retries_exhausted', `${message} (${attempts} attempts): ${errorMessage(cause)}`, {
      cause,
      retryable: true,
    });
    this.name = 'RetriesExhaustedError';
  }
}

/**
 * A tenant is over its LLM token budget: its work waits until `retryAt` (epoch ms) while other tenants'
 * work goes on. Retryable.
 */
export class BudgetExceededError extends LightmemError {
  constructor(
    message: string,
    readonly tenantId: string,
    readonly retryAt: number,
  ) {
    super('busy', message, { retryable: true });
    this.name = 'BudgetExceededError';
  }
}

/** Too many requests (for one API key, or for the server at this moment): retry after `retryAfterMs`. */
export class RateLimitedError extends LightmemError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super('rate_limited', message, { retryable: true });
    this.name = 'RateLimitedError';
  }
}

/** An error's code: ours, else `internal` (what dead letters, metrics labels and worker reports carry). */
export function errorCode(error: unknown): ErrorCode {
  return error instanceof LightmemError ? error.code : 'internal';
}

export function isRetryable(error: unknown): boolean {
  return error instanceof LightmemError && error.retryable;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * An error as log fields: its message, its code (`internal` for an error that is not ours, or a library's
 * own code such as `ECONNREFUSED`), whether it is retryable, the field it names and the chain of causes
 * under it. What every log line about an error carries, so an operator can tell a transient failure from a
 * bug without the message alone.
 */
export function errorFields(error: unknown): {
  error: string;
  code: string;
  retryable: boolean;
  field?: string;
  cause?: string;
} {
  const libraryCode =
    error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
  const fields: ReturnType<typeof errorFields> = {
    error: errorMessage(error),
    code: error instanceof LightmemError ? error.code : (libraryCode ?? 'internal'),
    retryable: isRetryable(error),
  };
  if (error instanceof LightmemError && error.field !== undefined) fields.field = error.field;
  const cause = causeOf(error);
  if (cause !== undefined) fields.cause = cause;
  return fields;
}

/** The chain of causes under an error, for logs ("SqliteError SQLITE_BUSY: database is locked ← …"). */
export function causeOf(error: unknown): string | undefined {
  const parts: string[] = [];
  let cause = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause !== undefined && depth < 5; depth++) {
    if (cause instanceof Error) {
      const code = 'code' in cause && typeof cause.code === 'string' ? ` ${cause.code}` : '';
      parts.push(`${cause.name}${code}: ${cause.message}`);
      cause = cause.cause;
    } else {
      parts.push(typeof cause === 'string' ? cause : JSON.stringify(cause));
      cause = undefined;
    }
  }
  return parts.length === 0 ? undefined : parts.join(' ← ');
}
