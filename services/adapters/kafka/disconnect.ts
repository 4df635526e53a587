import { withTimeout } from '../../core/deadline.js';

/** How long a client's disconnect may take before we stop waiting for it (a wedged client hangs it). */
const disconnectTimeoutMs = 10_000;

/** Disconnects a kafkajs client without ever failing or hanging the caller. */
export async function disconnectQuietly(client: { disconnect(): Promise<void> }): Promise<void> {
  await withTimeout(client.disconnect(), disconnectTimeoutMs, () => new Error('disconnect timed out')).catch(
    () => undefined,
  );
}
