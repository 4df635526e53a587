import type { SqliteEventLog } from '../adapters/sqlite/sqlite-event-log.js';
import { isRetryable } from '../core/errors.js';
import type { Logger } from '../core/ports/logger.js';
import type { StageDefinition } from './pipeline.js';

/**
 * Deletes the intermediate records (compressed turns, segments, memories, memory ops) of an embedded
 * version's log that every stage reading them has committed past; the raw topic stays whole (see
 * `SqliteEventLog.pruneConsumed`). Best effort: contention with another process (a retryable error) is
 * left for the next run.
 */
export async function pruneConsumedRecords(
  log: SqliteEventLog,
  stages: readonly Pick<StageDefinition, 'name' | 'input'>[],
  logger: Logger,
  signal?: AbortSignal,
): Promise<void> {
  try {
    const pruned = await log.pruneConsumed(
      stages.map((stage) => ({ group: stage.name, topic: stage.input })),
      signal === undefined ? {} : { signal },
    );
    if (pruned.deleted > 0) logger.debug('pruned consumed log records', { ...pruned });
  } catch (error) {
    if (!isRetryable(error)) throw error;
  }
}
