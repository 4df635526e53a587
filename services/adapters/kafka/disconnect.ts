import { withTimeout } from '../../core/deadline.js';

/** How long a client's disconnect may take before we stop waiting for it (a wedged client hangs it). */
const disconnectTimeoutMs = 10_000;

/** Disconnects a kafkajs client without ever failing or hanging the caller. */
export async function disconnectQuietly(client: { disconnect(): Promise<void> }): Promise<void> {
  await withTimeout(client.disconnect(), disconnectTimeoutMs, () => new Error('disconnect timed out')).catch(
    () => undefined,
  );
}

/**
 * Deletes a throwaway consumer group (a range read's, a keyring reader's) without ever failing or hanging
 * the caller: right after a broker restart the admin client can retry for minutes. A group left behind has
 * no offsets and expires on its own.
 */
export async function deleteGroupQuietly(
  admin: { deleteGroups(groupIds: string[]): Promise<unknown> },
  groupId: string,
): Promise<void> {
  await withTimeout(
    admin.deleteGroups([groupId]),
    5_000,
    () => new Error('deleting the group timed out'),
  ).catch(() => undefined);
}
