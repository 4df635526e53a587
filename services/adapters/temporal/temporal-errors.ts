import { ApplicationFailure, isGrpcServiceError } from '@temporalio/client';
import {
  BudgetExceededError,
  errorMessage,
  LightmemError,
  StorageBusyError,
  type ErrorCode,
} from '../../core/errors.js';

const errorCodes: readonly ErrorCode[] = [
  'invalid_input',
  'not_found',
  'scope_required',
  'conflict',
  'model_mismatch',
  'storage_unavailable',
  'storage_corrupt',
  'config_invalid',
  'busy',
  'retries_exhausted',
  'internal',
];

/** What an activity throws to Temporal: a `LightmemError` becomes an ApplicationFailure of its code. */
export function activityFailure(error: unknown): unknown {
  if (!(error instanceof LightmemError)) return error;
  const delay =
    error instanceof BudgetExceededError
      ? Math.max(0, error.retryAt - Date.now())
      : error instanceof StorageBusyError
        ? error.retryAfterMs
        : undefined;
  return ApplicationFailure.create({
    message: error.message,
    type: error.code,
    // A LightmemError that retrying cannot help is never retried, whatever the retry policy says.
    nonRetryable: !error.retryable,
    details: [{ code: error.code, field: error.field ?? null, retryable: error.retryable }],
    ...(error.retryable && delay !== undefined ? { nextRetryDelay: delay } : {}),
    ...(error.cause instanceof Error ? { cause: error.cause } : {}),
  });
}

/** gRPC status codes (google.rpc.Code) the client maps. */
const grpc = {
  cancelled: 1,
  unknown: 2,
  invalidArgument: 3,
  deadlineExceeded: 4,
  notFound: 5,
  permissionDenied: 7,
  resourceExhausted: 8,
  failedPrecondition: 9,
  aborted: 10,
  internal: 13,
  unavailable: 14,
  unauthenticated: 16,
} as const;

/** The gRPC status of a failed call (the client's or the worker's native one), anywhere in the cause chain. */
export function grpcCodeOf(error: unknown): number | undefined {
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (isGrpcServiceError(current)) return current.code;
    // The worker's native connection reports a ServiceError of its own, with a numeric code.
    if (current instanceof Error && current.name === 'ServiceError' && 'code' in current) {
      const { code } = current;
      if (typeof code === 'number') return code;
    }
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

/**
 * A failed call to the Temporal server as a LightmemError: overloaded is `busy`, unreachable (or any
 * transport failure) is `storage_unavailable`, both retryable; a namespace that does not exist or a refused
 * credential is `config_invalid`, an argument the server rejects `invalid_input` (retrying cannot help).
 */
export function temporalError(error: unknown, action: string): LightmemError {
  if (error instanceof LightmemError) return error;
  const code = grpcCodeOf(error);
  const message = `${action}: ${errorMessage(error)}`;
  switch (code) {
    case grpc.resourceExhausted:
      return new LightmemError('busy', message, { retryable: true, cause: error });
    case grpc.notFound:
    case grpc.permissionDenied:
    case grpc.unauthenticated:
    case grpc.failedPrecondition:
      return new LightmemError('config_invalid', message, { retryable: false, cause: error });
    case grpc.invalidArgument:
      return new LightmemError('invalid_input', message, { retryable: false, cause: error });
    default:
      return new LightmemError('storage_unavailable', message, { retryable: true, cause: error });
  }
}

/**
 * A failed workflow as a LightmemError: the code of the activity failure at its root when it was one of
 * ours (with its retryable flag), else `internal`; the Temporal failure is the cause.
 */
export function workflowError(error: unknown, action: string): LightmemError {
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 8; depth++) {
    if (
      current instanceof ApplicationFailure &&
      (errorCodes as readonly string[]).includes(current.type ?? '')
    ) {
      return new LightmemError(current.type as ErrorCode, `${action}: ${current.message}`, {
        retryable: !current.nonRetryable,
        cause: error,
      });
    }
    current = current.cause;
  }
  return new LightmemError('internal', `${action}: ${errorMessage(error)}`, {
    retryable: false,
    cause: error,
  });
}

/**
 * A worker that could not be created: a failed call to the server as `temporalError` says; anything else
 * (the workflow bundle does not build, an option is refused) is `internal`, and retrying cannot help.
 */
export function workerSetupError(error: unknown, action: string): LightmemError {
  if (error instanceof LightmemError) return error;
  const transport = error instanceof Error && error.name === 'TransportError';
  return transport || grpcCodeOf(error) !== undefined
    ? temporalError(error, action)
    : new LightmemError('internal', `${action}: ${errorMessage(error)}`, { retryable: false, cause: error });
}
