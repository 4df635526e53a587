import type { EventLog } from '../core/ports/event-log.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { DeadLetter } from '../core/model/generated.js';
import { Topics } from '../core/model/topics.js';
import type { StageLag } from '../runtime/pipeline.js';

export interface PipelineStats {
  readonly events: { readonly appended: number };
  readonly memories: { readonly live: number; readonly superseded: number; readonly embedder: string | null };
  readonly stages: readonly {
    readonly stage: string;
    readonly pending: number;
    readonly processed: number;
  }[];
  readonly deadLetters: {
    /** Dead letters ever written (positions on Kafka). */
    readonly count: number;
    /** What the log keeps now, within the cap and retention (null where the log cannot tell: Kafka). */
    readonly retained: { readonly records: number; readonly bytes: number; readonly pruned: number } | null;
    readonly maxBytes: number;
    readonly retentionDays: number;
    readonly recent: readonly DeadLetter[];
  };
  /** Sleep-time consolidation: memories no run has taken yet, of how many users, and decisions logged. */
  readonly consolidation: { readonly pending: number; readonly users: number; readonly ops: number };
  readonly components: Readonly<Record<string, string>>;
  /** Features that are off, and how to turn them on. */
  readonly warnings: readonly string[];
}

export async function collectStats(
  log: EventLog,
  store: MemoryStore,
  lags: readonly StageLag[],
  components: Readonly<Record<string, string>>,
  deadLetterLimits: { readonly maxBytes: number; readonly retentionDays: number },
  warnings: readonly string[] = [],
  recentDeadLetters = 20,
): Promise<PipelineStats> {
  const storeStats = await store.stats();
  const deadCount = await log.endOffset(Topics.deadLetters);
  // On Kafka, transaction markers take positions too: read twice as far back to find the last N records.
  const recent = (
    await log.read(Topics.deadLetters, Math.max(0, deadCount - 2 * recentDeadLetters), 2 * recentDeadLetters)
  ).slice(-recentDeadLetters);
  const pendingUsers = await store.pendingUsers();
  return {
    events: { appended: await log.endOffset(Topics.raw) },
    consolidation: {
      pending: pendingUsers.reduce((sum, user) => sum + user.pending, 0),
      users: pendingUsers.length,
      ops: await log.endOffset(Topics.memoryOps),
    },
    memories: { live: storeStats.live, superseded: storeStats.superseded, embedder: storeStats.embedderId },
    stages: lags.map((lag) => ({
      stage: lag.stage,
      pending: Math.max(0, lag.end - lag.committed),
      processed: lag.committed,
    })),
    deadLetters: {
      count: deadCount,
      retained: await log.usage(Topics.deadLetters),
      ...deadLetterLimits,
      recent: recent.map((r) => r.value),
    },
    components,
    warnings,
  };
}
