/**
 * `work`, or `onTimeout()`'s error if it has not settled within `ms`. The work itself is not cancelled (pass
 * it a signal for that): this bounds how long the caller waits for a client that may never answer.
 */
export async function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}
