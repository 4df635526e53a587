/** Exponential back-off: `baseMs` doubled per attempt after the first (attempt 1 waits `baseMs`), at most `maxMs`. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 16));
}
