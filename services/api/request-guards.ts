import { InvalidInputError, LightmemError } from '../core/errors.js';

/**
 * Parses a JSON body after checking its nesting in one linear pass: a body nested deeper than `maxDepth`
 * is refused (400) before JSON.parse or any schema walks it, so no input can exhaust the stack.
 */
export function parseJsonBody(text: string, maxDepth: number): unknown {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) {
        throw new InvalidInputError(`the JSON body is nested deeper than ${maxDepth} levels`, '(body)');
      }
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new InvalidInputError('the request body is not valid JSON', '(body)', error);
  }
}

export interface AdmissionLimits {
  readonly maxConcurrentRequests: number;
  /** Bytes of request bodies admitted at once. */
  readonly maxInFlightBodyBytes: number;
  readonly maxBodyBytes: number;
}

/**
 * Admission control, before a body is read: at most `maxConcurrentRequests` requests and
 * `maxInFlightBodyBytes` of bodies (by Content-Length; a chunked body counts as `maxBodyBytes`) at once.
 * A request over either bound is refused at once (503, retry shortly): the process's memory stays bounded
 * however many clients send large bodies together.
 */
export class Admission {
  private requests = 0;
  private bytes = 0;

  constructor(private readonly limits: AdmissionLimits) {}

  /** Admits a request or throws (413 for a body over the limit, 503 when full); returns its release. */
  admit(headers: {
    'content-length'?: string | undefined;
    'transfer-encoding'?: string | undefined;
  }): () => void {
    const declared = headers['content-length'];
    const bodyBytes =
      declared !== undefined
        ? Number(declared)
        : headers['transfer-encoding'] !== undefined
          ? this.limits.maxBodyBytes
          : 0;
    if (!Number.isSafeInteger(bodyBytes) || bodyBytes < 0) {
      throw new InvalidInputError('Content-Length is not a number of bytes', 'content-length');
    }
    if (bodyBytes > this.limits.maxBodyBytes) {
      throw new LightmemError(
        'payload_too_large',
        `the request body is over the ${this.limits.maxBodyBytes}-byte limit`,
        { field: '(body)' },
      );
    }
    if (
      this.requests >= this.limits.maxConcurrentRequests ||
      (this.bytes > 0 && this.bytes + bodyBytes > this.limits.maxInFlightBodyBytes)
    ) {
      throw new LightmemError(
        'overloaded',
        'the server is at its bound of concurrent requests; retry shortly',
        {
          retryable: true,
        },
      );
    }
    this.requests++;
    this.bytes += bodyBytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.requests--;
      this.bytes -= bodyBytes;
    };
  }

  get inFlight(): { requests: number; bytes: number } {
    return { requests: this.requests, bytes: this.bytes };
  }
}

/** Whether a browser origin may call the API: no Origin (not a browser) or one configured. */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  return origin === undefined || allowed.includes(origin);
}
