import { setTimeout as sleep } from 'node:timers/promises';
import type { MemoryEntry, MemoryOp, DeadLetter } from '../../services/core/model/generated.js';
import type { EventLog } from '../../services/core/ports/event-log.js';
import type { MemoryStore } from '../../services/core/ports/memory-store.js';
import type { Clock } from '../../services/core/ports/clock.js';
import type { Logger } from '../../services/core/ports/logger.js';
import { Topics } from '../../services/core/model/topics.js';
import { compositeKey } from '../../services/core/model/keys.js';
import { payloadExcerpt } from '../../services/core/model/dead-letter.js';
import { LightmemError } from '../../services/core/errors.js';
import { mapLimited } from '../../services/core/concurrency-limit.js';
import type { UpdateCase, UpdateDecider } from '../../services/stages/consolidation/decision.js';
import {
  invertQueues,
  updateQueue,
  type QueueSettings,
} from '../../services/stages/consolidation/update-queues.js';
import {
  nearDuplicateGroups,
  nearDuplicatePolicy,
} from '../../services/stages/consolidation/near-duplicates.js';
import {
  decisionOp,
  mergeOp,
  type OpContext,
} from '../../services/stages/consolidation/consolidation-ops.js';
import type {
  ConsolidationActivities,
  ConsolidationPlan,
  ConsolidationScope,
  ConsolidationTask,
  DecideInput,
  DecideResult,
  DecisionSummary,
  FinishInput,
  FinishResult,
  PlanInput,
} from './activity-types.js';

/** What an activity may tell its runner while it works (Temporal's activity Context, or the embedded runner's). */
export interface ActivityContext {
  /** Records progress (and proves the activity alive); the details come back to a retry of the same activity. */
  heartbeat(details?: unknown): void;
  /** The details of the last heartbeat of an earlier attempt of this activity, if any. */
  readonly heartbeatDetails: unknown;
  readonly signal: AbortSignal;
}

export interface ConsolidationSettings extends QueueSettings {
  /** The LLM-free policy's least similarity. */
  readonly nearDuplicate: number;
  readonly maxSourcesPerRun: number;
  /** Tasks decided at once within one activity (LLM calls in flight). */
  readonly decideConcurrency: number;
  /** How long finishing waits for the applier before it fails (retryably), and how often it looks. */
  readonly applyTimeoutMs: number;
  readonly applyPollMs: number;
}

export interface ConsolidationDeps {
  readonly store: MemoryStore;
  readonly log: EventLog;
  /** The LLM's decisions; null: the LLM-free policy (near-duplicates merged). */
  readonly decider: UpdateDecider | null;
  /** The embedder of the stored vectors (null: no vectors, so no queues). */
  readonly embedderId: string | null;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly settings: ConsolidationSettings;
  /** The context of the activity running now. */
  readonly context: () => ActivityContext;
}

const requestedBy = 'consolidation';
/** Nearest-neighbour queries sent in one call. */
const nearestBatch = 64;

interface DecideProgress {
  readonly cursor: number;
  readonly decisions: DecisionSummary[];
  readonly skipped: number;
}

function progressOf(details: unknown): DecideProgress {
  if (typeof details !== 'object' || details === null) return { cursor: 0, decisions: [], skipped: 0 };
  const { cursor, decisions, skipped } = details as Partial<DecideProgress>;
  return typeof cursor === 'number' && Array.isArray(decisions) && typeof skipped === 'number'
    ? { cursor, decisions, skipped }
    : { cursor: 0, decisions: [], skipped: 0 };
}

function summaryOf(op: MemoryOp, merge: boolean, problem: string | null): DecisionSummary {
  return {
    opId: op.opId,
    op: op.op === 'erase' ? 'ignore' : op.op,
    merge,
    targetIds: op.targetIds,
    sourceIds: op.sourceIds,
    replacementIds: op.replacementIds,
    text: op.replacements[0]?.text ?? null,
    reason: op.reason,
    problem,
  };
}

function scopeOf(input: ConsolidationScope): ConsolidationScope {
  return { tenantId: input.tenantId, userId: input.userId };
}

/**
 * The activities of sleep-time consolidation, as plain functions over the ports (Temporal's layout): JSON
 * in, JSON out, every one confined to the (tenant, user) of its input. The same functions run on a
 * Temporal worker and in the embedded runner.
 */
export function createActivities(deps: ConsolidationDeps): ConsolidationActivities {
  const { store, log, decider, settings } = deps;
  const policy = decider?.policy ?? nearDuplicatePolicy({ similarity: settings.nearDuplicate });

  async function loadEntries(
    scope: ConsolidationScope,
    ids: readonly string[],
  ): Promise<Map<string, MemoryEntry>> {
    const unique = [...new Set(ids)];
    const loaded = await mapLimited(unique, 16, (id) => store.get(scope, id));
    const entries = new Map<string, MemoryEntry>();
    for (const entry of loaded) if (entry !== undefined) entries.set(entry.id, entry);
    return entries;
  }

  async function planConsolidation(input: PlanInput): Promise<ConsolidationPlan> {
    const scope = scopeOf(input);
    const plannedAt = deps.clock.now();
    const pending = await store.pendingConsolidation(scope, settings.maxSourcesPerRun + 1);
    const sources = pending.slice(0, settings.maxSourcesPerRun);
    const more = pending.length > settings.maxSourcesPerRun;
    const empty = { sourceIds: sources.map((s) => s.id), tasks: [], more, policy, plannedAt };
    if (sources.length === 0 || deps.embedderId === null) return empty;
    const embedderId = deps.embedderId;
    const vectors = await store.embeddings(
      scope,
      sources.map((source) => source.id),
    );
    const queued = sources.filter((source) => vectors.has(source.id));
    const queues: { source: MemoryEntry; queue: ReturnType<typeof updateQueue> }[] = [];
    for (let i = 0; i < queued.length; i += nearestBatch) {
      const batch = queued.slice(i, i + nearestBatch);
      const found = await store.nearest(
        batch.map((source) => ({
          scope,
          vector: vectors.get(source.id) as Float32Array,
          embedderId,
          // The memory itself is among its nearest: one more keeps topK others.
          k: settings.topK + 1,
          occurredAtMost: source.occurredAt,
        })),
      );
      batch.forEach((source, j) =>
        queues.push({ source, queue: updateQueue(source, found[j] ?? [], settings) }),
      );
      deps.context().heartbeat();
    }
    const cases = invertQueues(queues);
    const tasks: ConsolidationTask[] =
      decider === null
        ? nearDuplicateGroups(cases, { similarity: settings.nearDuplicate }).map((members) => ({
            kind: 'merge' as const,
            memberIds: members.map((member) => member.id),
          }))
        : cases.map((item) => ({
            kind: 'decide' as const,
            targetId: item.target.id,
            sources: item.sources.map((source) => ({ id: source.memory.id, similarity: source.similarity })),
          }));
    return { ...empty, tasks };
  }

  /** The op of one task, or null when its memories changed since the plan (decided already). */
  async function decideTask(
    task: ConsolidationTask,
    entries: ReadonlyMap<string, MemoryEntry>,
    scope: ConsolidationScope,
    context: OpContext,
    signal: AbortSignal,
  ): Promise<{ op: MemoryOp; merge: boolean; problem: DeadLetter | null } | null> {
    const current = (id: string): MemoryEntry | undefined => {
      const entry = entries.get(id);
      return entry !== undefined && entry.supersededBy === null ? entry : undefined;
    };
    if (task.kind === 'merge') {
      const members = task.memberIds
        .map(current)
        .filter((entry): entry is MemoryEntry => entry !== undefined);
      return members.length < 2
        ? null
        : { op: mergeOp(members, settings.nearDuplicate, context), merge: true, problem: null };
    }
    const target = current(task.targetId);
    const sources = task.sources.flatMap(({ id, similarity }) => {
      const memory = entries.get(id);
      return memory === undefined ? [] : [{ memory, similarity }];
    });
    if (target === undefined || sources.length === 0 || decider === null) return null;
    const item: UpdateCase = { target, sources };
    const decision = await decider.decide(item, { ...scope, signal });
    const op = decisionOp(item, decision, { ...context, promptHash: decider.promptHash });
    const problem =
      decision.action === 'ignore' && decision.problem !== undefined
        ? {
            stage: 'consolidator',
            sourceTopic: Topics.memories,
            sourceOffset: null,
            sourceLine: null,
            key: compositeKey([scope.tenantId, scope.userId]),
            errorCode: decision.problem.code,
            field: null,
            reason: `${decision.problem.reason} (target ${target.id}; decided ignore)`,
            attempt: 1,
            payload: payloadExcerpt(decision.problem.answer),
            failedAt: context.now,
          }
        : null;
    return { op, merge: false, problem };
  }

  async function decideTasks(input: DecideInput): Promise<DecideResult> {
    const scope = scopeOf(input);
    const activity = deps.context();
    const progress = progressOf(activity.heartbeatDetails);
    const decisions = [...progress.decisions];
    let skipped = progress.skipped;
    const ids = input.tasks.flatMap((task) =>
      task.kind === 'merge' ? task.memberIds : [task.targetId, ...task.sources.map((s) => s.id)],
    );
    const entries = await loadEntries(scope, ids);
    const context: OpContext = { policy, requestedBy, now: input.plannedAt };
    const key = compositeKey([scope.tenantId, scope.userId]);
    const window = Math.max(1, settings.decideConcurrency);
    for (let start = progress.cursor; start < input.tasks.length; start += window) {
      activity.signal.throwIfAborted();
      const tasks = input.tasks.slice(start, start + window);
      const made = await mapLimited(tasks, window, (task) =>
        decideTask(task, entries, scope, context, activity.signal),
      );
      const ops = made.filter((m): m is NonNullable<typeof m> => m !== null);
      skipped += made.length - ops.length;
      if (!input.dryRun && ops.length > 0) {
        // Ops first, dead letters after: a crash between them re-decides (the ledger answers) and re-appends
        // the same ops (dedup by op id; the applier applies an op id once).
        await log.append(
          Topics.memoryOps,
          ops.map(({ op }) => ({ key, value: op, dedupKey: op.opId })),
        );
        const letters = ops.flatMap(({ problem }) => (problem === null ? [] : [problem]));
        if (letters.length > 0) {
          await log.append(
            Topics.deadLetters,
            letters.map((value) => ({ key: 'consolidator', value })),
          );
        }
      }
      decisions.push(...ops.map(({ op, merge, problem }) => summaryOf(op, merge, problem?.reason ?? null)));
      activity.heartbeat({ cursor: start + tasks.length, decisions, skipped } satisfies DecideProgress);
    }
    return { decisions, skipped };
  }

  async function finishConsolidation(input: FinishInput): Promise<FinishResult> {
    const scope = scopeOf(input);
    if (input.dryRun) return { marked: 0 };
    const activity = deps.context();
    const deadline = deps.clock.now() + settings.applyTimeoutMs;
    for (;;) {
      const recorded = await store.recordedOps(scope.tenantId, input.opIds);
      if (input.opIds.every((id) => recorded.has(id))) break;
      if (deps.clock.now() >= deadline) {
        throw new LightmemError(
          'busy',
          `${input.opIds.length - recorded.size} of ${input.opIds.length} consolidation ops not applied after ${settings.applyTimeoutMs} ms (is the applier running?)`,
          { retryable: true },
        );
      }
      activity.heartbeat();
      await sleep(settings.applyPollMs, undefined, { signal: activity.signal });
    }
    const marked = await store.markConsolidated(scope, input.sourceIds, input.plannedAt);
    return { marked };
  }

  return { planConsolidation, decideTasks, finishConsolidation };
}
