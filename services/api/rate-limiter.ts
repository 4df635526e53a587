import type { Clock } from '../core/ports/clock.js';

export interface RateLimit {
  /** Tokens added per second. */
  readonly requestsPerSecond: number;
  /** The bucket's size: requests a key may send at once after a quiet while. */
  readonly burst: number;
}

/**
 * Token buckets per API key: a request takes a token; an empty bucket answers how long until the next one.
 * Buckets of keys not seen for a while are dropped (at most `maxKeys` are kept, oldest first).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly clock: Clock,
    private readonly maxKeys = 100_000,
  ) {}

  /** 0 when the request may go now (a token is taken), else the milliseconds until a token is free. */
  take(key: string): number {
    const now = this.clock.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.limit.burst, at: now };
    const refilled = Math.min(
      this.limit.burst,
      bucket.tokens + ((now - bucket.at) / 1000) * this.limit.requestsPerSecond,
    );
    // Re-inserted to keep the map in least-recently-used order.
    this.buckets.delete(key);
    if (refilled >= 1) {
      this.buckets.set(key, { tokens: refilled - 1, at: now });
      this.evict();
      return 0;
    }
    this.buckets.set(key, { tokens: refilled, at: now });
    return Math.ceil(((1 - refilled) / this.limit.requestsPerSecond) * 1000);
  }

  private evict(): void {
    while (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) return;
      this.buckets.delete(oldest);
    }
  }
}
