import { LightmemError, RateLimitedError, StorageBusyError } from '../core/errors.js';

export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly field: string | null;
    readonly retryable: boolean;
  };
}

/** HTTP status for a typed error: the client's fault (4xx) or ours / transient (5xx). */
export function statusFor(error: unknown): number {
  if (!(error instanceof LightmemError)) return 500;
  switch (error.code) {
    case 'invalid_input':
    case 'scope_required':
    case 'model_mismatch':
      return 400;
    case 'unauthorized':
      return 401;
    case 'forbidden':
      return 403;
    case 'not_found':
      return 404;
    case 'method_not_allowed':
      return 405;
    case 'conflict':
      return 409;
    case 'payload_too_large':
      return 413;
    case 'unsupported_media_type':
      return 415;
    case 'busy':
    case 'rate_limited':
      return 429;
    case 'unsupported':
      return 501;
    case 'storage_unavailable':
    case 'retries_exhausted':
    case 'overloaded':
      return 503;
    default:
      return 500;
  }
}

export function errorBody(error: unknown): ErrorBody {
  if (error instanceof LightmemError) {
    return {
      error: {
        code: error.code,
        message: error.message,
        field: error.field ?? null,
        retryable: error.retryable,
      },
    };
  }
  return { error: { code: 'internal', message: 'internal error', field: null, retryable: true } };
}

/** Seconds a client should wait before retrying (Retry-After) for a retryable 429/503, else null. */
export function retryAfterSeconds(error: unknown): number | null {
  const status = statusFor(error);
  if (status !== 429 && status !== 503) return null;
  if (!(error instanceof LightmemError) || !error.retryable) return null;
  const waitMs =
    error instanceof StorageBusyError || error instanceof RateLimitedError ? error.retryAfterMs : 1_000;
  return Math.max(1, Math.ceil(waitMs / 1000));
}
