import { errors } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError, UnavailableError, errorMessage } from '../../core/errors.js';
import { withoutUrlCredentials } from '../../core/config.js';

/**
 * Elasticsearch failures as LightmemErrors. Transient ones (the server is down or unreachable, timed out,
 * overloaded: 429, 408 and 5xx) are `UnavailableError` (retryable), so a pipeline stage retries them with
 * backoff instead of dead-lettering its input; anything else is a bug of ours or a broken cluster.
 */

const errorBodySchema = z.object({
  error: z.object({ type: z.string(), reason: z.string().nullish() }).loose(),
});

/** The HTTP status of a failed request, when the server answered. */
export function statusOf(error: unknown): number | undefined {
  return error instanceof errors.ResponseError ? error.statusCode : undefined;
}

/** The body of a failed request, when the server answered. */
export function responseBody(error: unknown): unknown {
  return error instanceof errors.ResponseError ? error.body : undefined;
}

/** The `error.type` of a failed request's body, e.g. `index_not_found_exception`. */
export function errorTypeOf(error: unknown): string | undefined {
  if (!(error instanceof errors.ResponseError)) return undefined;
  const body = errorBodySchema.safeParse(error.body);
  return body.success ? body.data.error.type : undefined;
}

export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** A missing index or alias (for a tenant alias: the tenant never wrote anything). */
export function isIndexNotFound(error: unknown): boolean {
  return statusOf(error) === 404 && errorTypeOf(error) === 'index_not_found_exception';
}

/** Wraps a failure of `action` (e.g. "search") into the LightmemError a caller can act on. */
export function esFailure(error: unknown, action: string): LightmemError {
  if (error instanceof LightmemError) return error;
  const what = `elasticsearch ${action} failed`;
  if (
    error instanceof errors.ConnectionError ||
    error instanceof errors.TimeoutError ||
    error instanceof errors.NoLivingConnectionsError ||
    error instanceof errors.RequestAbortedError
  ) {
    return new UnavailableError(`${what}: ${withoutUrlCredentials(error.message)}`, error);
  }
  const status = statusOf(error);
  if (status !== undefined) {
    const reason = `${what} (HTTP ${status}): ${firstLine(withoutUrlCredentials(errorMessage(error)))}`;
    if (isTransientStatus(status)) return new UnavailableError(reason, error);
    if (status === 401) {
      // Retrying cannot help: the credentials are wrong (or missing on a secured cluster).
      return new LightmemError(
        'config_invalid',
        `${reason} - Elasticsearch refused the credentials (elasticsearch.apiKey, or username + password)`,
        { field: 'elasticsearch', cause: error },
      );
    }
    if (status === 403) {
      // Authenticated, but the role lacks a privilege on the index: an operator's fix, not a retry.
      return new LightmemError(
        'config_invalid',
        `${reason} - the Elasticsearch user (or API key) lacks a privilege this needs (see "Security" in docs/operations.md for the roles)`,
        { field: 'elasticsearch', cause: error },
      );
    }
    return new LightmemError('internal', reason, { cause: error });
  }
  if (error instanceof errors.ProductNotSupportedError) {
    return new LightmemError('config_invalid', `${what}: the server is not Elasticsearch`, { cause: error });
  }
  return new LightmemError('internal', `${what}: ${withoutUrlCredentials(errorMessage(error))}`, {
    cause: error,
  });
}

/** A failed item of a bulk request (the request itself succeeded). */
export function bulkItemFailure(
  status: number,
  cause: { type?: string | undefined; reason?: string | null | undefined } | null,
  action: string,
  field?: string,
): LightmemError {
  const reason = `elasticsearch ${action} failed (HTTP ${status}): ${cause?.type ?? 'error'}: ${cause?.reason ?? ''}`;
  if (isTransientStatus(status)) return new UnavailableError(reason, cause);
  // The server refused the document itself: this input can never be written as it is.
  if (status === 400) return new LightmemError('invalid_input', reason, { field, cause });
  return new LightmemError('internal', reason, { field, cause });
}

function firstLine(text: string): string {
  const end = text.indexOf('\n');
  return end < 0 ? text : text.slice(0, end);
}
