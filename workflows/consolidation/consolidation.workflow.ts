// Temporal workflow code of sleep-time consolidation (bundled by the worker, run in its deterministic
// sandbox). It imports only @temporalio/workflow, the activity types and the orchestration, which is written
// once for Temporal and for the embedded runner (lint enforces it).
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
  type ActivityOptions,
  type RetryPolicy,
} from '@temporalio/workflow';
import type {
  ConsolidationActivities,
  ConsolidationRunInput,
  ConsolidationScope,
  ConsolidationSummary,
  RunLimits,
} from './activity-types.js';
import { consolidate } from './orchestration.js';

/** The input of a user's entity workflow (`consolidate:<tenant>:<user>`), built from the config. */
export interface ConsolidationEntityInput extends ConsolidationScope, RunLimits {
  /** A run starts once this many new memories were signalled… */
  readonly minNewEntries: number;
  /** …or this long after the first of them (ms); also how long an idle workflow waits before it completes. */
  readonly maxWaitMs: number;
  /** Runs before the workflow continues as new (it also does when the server suggests it). */
  readonly continueAsNewAfterRuns: number;
  /** Signalled memories not consolidated yet, carried over a continue-as-new. */
  readonly pending?: number | undefined;
  /** Workflow time (epoch ms) of the first of them. */
  readonly pendingSince?: number | null | undefined;
  /** The activities' heartbeat timeout (ms; default 30 s): how soon an activity of a dead worker is retried. */
  readonly heartbeatTimeoutMs?: number | undefined;
}

/** What one execution (up to its continue-as-new or its completion) of an entity workflow did. */
export interface ConsolidationEntityResult {
  readonly runs: number;
  readonly sources: number;
  readonly decisions: number;
}

/** What the `state` query of an entity workflow answers. */
export interface ConsolidationEntityState {
  /** Signalled memories waiting for the next run. */
  readonly pending: number;
  readonly pendingSince: number | null;
  readonly running: boolean;
  /** Runs of this execution. */
  readonly runs: number;
  readonly lastRun: Pick<
    ConsolidationSummary,
    'sources' | 'targets' | 'counts' | 'skipped' | 'problems'
  > | null;
}

/** Memories arrived for the workflow's user: how many. */
export const newMemoriesSignal = defineSignal<[count: number]>('newMemories');
export const entityStateQuery = defineQuery<ConsolidationEntityState>('state');

const defaultHeartbeatTimeoutMs = 30_000;

/**
 * Retries with backoff. Retryable failures are retried until they succeed (a stopped applier, an
 * unreachable store or LLM: the run waits for them, visibly, as a pending activity with its last failure);
 * a `LightmemError` with `retryable: false` reaches here as a non-retryable ApplicationFailure and fails the
 * run at once.
 */
const retry: RetryPolicy = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '2 minutes',
};

/**
 * The activities with their options. Planning is a few store queries; deciding may take minutes with an LLM
 * (it heartbeats a cursor and resumes from it); finishing waits for the applier (up to its own 5 min
 * limit, then fails retryably).
 */
function activities(options: { heartbeatTimeoutMs?: number | undefined; maximumAttempts?: number }) {
  const base: ActivityOptions = {
    heartbeatTimeout: options.heartbeatTimeoutMs ?? defaultHeartbeatTimeoutMs,
    retry:
      options.maximumAttempts === undefined ? retry : { ...retry, maximumAttempts: options.maximumAttempts },
  };
  const plan = proxyActivities<ConsolidationActivities>({ ...base, startToCloseTimeout: '10 minutes' });
  const decide = proxyActivities<ConsolidationActivities>({ ...base, startToCloseTimeout: '30 minutes' });
  const finish = proxyActivities<ConsolidationActivities>({ ...base, startToCloseTimeout: '15 minutes' });
  return {
    planConsolidation: plan.planConsolidation,
    decideTasks: decide.decideTasks,
    finishConsolidation: finish.finishConsolidation,
  } satisfies ConsolidationActivities;
}

/** A signalled count as a positive integer (a malformed one still counts as one memory). */
function countOf(count: unknown): number {
  return typeof count === 'number' && Number.isFinite(count) && count >= 1 ? Math.floor(count) : 1;
}

/**
 * The entity workflow of one (tenant, user), started or signalled by signal-with-start when memories land.
 * It waits until `minNewEntries` new memories were signalled or `maxWaitMs` passed since the first
 * unprocessed one, then consolidates the user (every memory pending in the store, not only the signalled
 * ones). Signals arriving during a run count toward the next. After `continueAsNewAfterRuns` runs, or when
 * the server suggests it, it continues as new with the unprocessed count (once every signal handler has
 * finished: no signal is lost). Idle (nothing pending and no signal for `maxWaitMs`), it completes; the
 * next signal-with-start starts it again. A run that fails for good fails the workflow (visible, never
 * silent); its memories stay pending in the store for the next one.
 */
export async function consolidationEntityWorkflow(
  input: ConsolidationEntityInput,
): Promise<ConsolidationEntityResult> {
  const proxied = activities({ heartbeatTimeoutMs: input.heartbeatTimeoutMs });
  const minNewEntries = Math.max(1, input.minNewEntries);
  const maxWaitMs = Math.max(1, input.maxWaitMs);
  let pending = Math.max(0, input.pending ?? 0);
  let pendingSince: number | null = pending > 0 ? (input.pendingSince ?? Date.now()) : null;
  let running = false;
  let runs = 0;
  let sources = 0;
  let decisions = 0;
  let lastRun: ConsolidationEntityState['lastRun'] = null;

  setHandler(newMemoriesSignal, (count: number) => {
    if (pending === 0) pendingSince = Date.now();
    pending += countOf(count);
  });
  setHandler(entityStateQuery, () => ({ pending, pendingSince, running, runs, lastRun }));

  const suggested = (): boolean => workflowInfo().continueAsNewSuggested;
  const carryOver = async (): Promise<never> => {
    // Signal handlers are synchronous, but wait anyway: whatever they counted is carried.
    await condition(allHandlersFinished);
    log.info('consolidation entity continues as new', { runs, pending });
    return continueAsNew<typeof consolidationEntityWorkflow>({
      tenantId: input.tenantId,
      userId: input.userId,
      ...(input.version === undefined ? {} : { version: input.version }),
      chunkSize: input.chunkSize,
      parallelism: input.parallelism,
      minNewEntries: input.minNewEntries,
      maxWaitMs: input.maxWaitMs,
      continueAsNewAfterRuns: input.continueAsNewAfterRuns,
      heartbeatTimeoutMs: input.heartbeatTimeoutMs,
      pending,
      pendingSince,
    });
  };

  for (;;) {
    if (pending === 0) {
      // Idle: wait for a signal, complete after maxWaitMs without one.
      const woken = await condition(() => pending > 0 || suggested(), maxWaitMs);
      if (!woken) {
        await condition(allHandlersFinished);
        if (pending === 0) return { runs, sources, decisions };
      }
      if (pending === 0) await carryOver();
    }
    // Wait for enough memories, or for the period since the first of them to pass.
    const since = pendingSince ?? Date.now();
    const remaining = since + maxWaitMs - Date.now();
    if (pending < minNewEntries && remaining > 0) {
      await condition(() => pending >= minNewEntries || suggested(), remaining);
    }
    if (pending < minNewEntries && since + maxWaitMs > Date.now()) {
      // Woken by the server's suggestion before the run was due: carry everything over.
      await carryOver();
    }

    const taken = pending;
    pending = 0;
    pendingSince = null;
    running = true;
    const run: ConsolidationRunInput = {
      tenantId: input.tenantId,
      userId: input.userId,
      ...(input.version === undefined ? {} : { version: input.version }),
      dryRun: false,
      chunkSize: input.chunkSize,
      parallelism: input.parallelism,
    };
    let summary: ConsolidationSummary;
    try {
      summary = await consolidate(proxied, run);
    } catch (error) {
      log.error('consolidation run failed', {
        signalled: taken,
        pendingAfter: pending,
        error: String(error),
      });
      throw error;
    } finally {
      running = false;
    }
    runs++;
    sources += summary.sources;
    decisions += summary.decisions.length;
    lastRun = {
      sources: summary.sources,
      targets: summary.targets,
      counts: summary.counts,
      skipped: summary.skipped,
      problems: summary.problems,
    };
    log.info('consolidation run done', {
      signalled: taken,
      sources: summary.sources,
      decisions: summary.decisions.length,
      skipped: summary.skipped,
      problems: summary.problems,
    });
    if (runs >= Math.max(1, input.continueAsNewAfterRuns) || suggested()) await carryOver();
  }
}

/** One consolidation of a user now (`lightmem consolidate` in distributed mode): its summary. */
export async function consolidateOnceWorkflow(input: ConsolidationRunInput): Promise<ConsolidationSummary> {
  // Someone waits for the answer: fail after a few attempts rather than retry for ever.
  return consolidate(activities({ maximumAttempts: 5 }), input);
}
