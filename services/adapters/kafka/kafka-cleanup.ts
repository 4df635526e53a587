import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin } from 'kafkajs';
import { UnavailableError, errorMessage } from '../../core/errors.js';

export interface PrefixCleanup {
  /** Topics and consumer groups whose names start with this are deleted. */
  readonly prefix: string;
  /** Topics outside the prefix to delete too. */
  readonly topics?: readonly string[];
  /** How long to wait for the groups' members to leave before giving up (retryable). */
  readonly timeoutMs?: number;
}

export interface CleanupResult {
  readonly topics: readonly string[];
  readonly groups: readonly string[];
}

/**
 * Deletes the consumer groups and topics of a prefix (a dropped pipeline version's). Waits for every
 * member to leave its group first (the stage services stop running a dropped version within seconds):
 * deleting topics under a live consumer would only make it fail and retry. Idempotent.
 */
export async function deletePrefixed(admin: Admin, cleanup: PrefixCleanup): Promise<CleanupResult> {
  const deadline = Date.now() + (cleanup.timeoutMs ?? 60_000);
  try {
    const groups = (await admin.listGroups()).groups
      .map((group) => group.groupId)
      .filter((id) => id.startsWith(cleanup.prefix));
    for (;;) {
      const described = groups.length === 0 ? [] : (await admin.describeGroups(groups)).groups;
      const busy = described.filter((group) => group.members.length > 0).map((group) => group.groupId);
      if (busy.length === 0) break;
      if (Date.now() > deadline) {
        throw new UnavailableError(`kafka: consumers still in ${busy.join(', ')}; is a service stuck?`);
      }
      await sleep(500);
    }
    if (groups.length > 0) await admin.deleteGroups(groups);
    const topics = (await admin.listTopics()).filter(
      (name) => name.startsWith(cleanup.prefix) || (cleanup.topics ?? []).includes(name),
    );
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 });
    return { topics, groups };
  } catch (error) {
    if (error instanceof UnavailableError) throw error;
    throw new UnavailableError(`kafka: deleting ${cleanup.prefix}* failed: ${errorMessage(error)}`, error);
  }
}
