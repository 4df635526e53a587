import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightmemConfig } from '../core/config.js';
import { runLimits } from './consolidation-setup.js';
import type { Clock } from '../core/ports/clock.js';
import type { Logger } from '../core/ports/logger.js';
import type { ScheduledJob } from '../core/ports/scheduler.js';
import { backoffMs } from '../core/backoff.js';
import { ConcurrencyLimit } from '../core/concurrency-limit.js';
import { isRetryable, errorFields } from '../core/errors.js';
import { compositeKey } from '../core/model/keys.js';
import {
  createActivities,
  type ActivityContext,
  type ConsolidationDeps,
} from '../../workflows/consolidation/activities.js';
import type {
  ConsolidationActivities,
  ConsolidationScope,
  ConsolidationSummary,
  RunLimits,
} from '../../workflows/consolidation/activity-types.js';
import { consolidate } from '../../workflows/consolidation/orchestration.js';
import { countDecisions } from '../telemetry/meters.js';
import { inSpan } from '../telemetry/trace-context.js';

const neverAborted = new AbortController().signal;

export interface InProcessConsolidationOptions {
  readonly limits: RunLimits;
  /** A user's run is due once this many memories wait, or `maxWaitMs` after they were first seen waiting. */
  readonly minNewEntries: number;
  readonly maxWaitMs: number;
  /** Users consolidated at once. */
  readonly userConcurrency: number;
  /** Attempts of an activity that fails retryably (Temporal's retry policy, in-process). */
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** The runner's options from the configuration (`consolidation`, and the pipeline's retry policy). */
export function inProcessConsolidationOptions(
  config: LightmemConfig,
  clock: Clock,
  logger: Logger,
): InProcessConsolidationOptions {
  return {
    limits: runLimits(config),
    minNewEntries: config.consolidation.minNewEntries,
    maxWaitMs: config.consolidation.maxWaitMs,
    userConcurrency: config.consolidation.userConcurrency,
    maxAttempts: config.pipeline.maxAttempts,
    retryBaseMs: config.pipeline.retryBaseMs,
    retryMaxMs: config.pipeline.retryMaxMs,
    clock,
    logger,
  };
}

/**
 * Embedded mode's orchestrator of sleep-time consolidation: the same orchestration (`consolidate`) and the
 * same activities as the Temporal workers, run in this process. Activities get Temporal's semantics where
 * they matter: a retryable failure is retried with back-off and the retry receives the last heartbeat's
 * details (the cursor it resumes from); a non-retryable one fails the run. Runs of one user never overlap.
 *
 * What is due comes from the store, not from signals: the pending set (memories no run took yet) survives
 * a kill -9, so after a restart the job finds the same users and consolidates them; decisions already
 * appended are not made twice (op ids, and the LLM ledger answers a repeated call).
 */
export class InProcessConsolidation {
  private readonly activities: ConsolidationActivities;
  private readonly contexts = new AsyncLocalStorage<ActivityContext>();
  /** The signal of the run an activity belongs to (runs of several users interleave). */
  private readonly runSignals = new AsyncLocalStorage<AbortSignal>();
  private readonly running = new Map<string, Promise<ConsolidationSummary>>();
  /** When the job first saw a user waiting (in memory: a restart waits one more period at most). */
  private readonly waitingSince = new Map<string, number>();
  private readonly users: ConcurrencyLimit;

  constructor(
    private readonly deps: Omit<ConsolidationDeps, 'context'>,
    private readonly options: InProcessConsolidationOptions,
  ) {
    const contexts = this.contexts;
    const activities = createActivities({
      ...deps,
      context: () => {
        const context = contexts.getStore();
        if (context === undefined) throw new Error('a consolidation activity ran outside its runner');
        return context;
      },
    });
    this.activities = {
      planConsolidation: (input) =>
        this.attempt('planConsolidation', () => activities.planConsolidation(input)),
      decideTasks: async (input) => {
        const result = await this.attempt('decideTasks', () => activities.decideTasks(input));
        countDecisions(input, result);
        return result;
      },
      finishConsolidation: (input) =>
        this.attempt('finishConsolidation', () => activities.finishConsolidation(input)),
    };
    this.users = new ConcurrencyLimit(options.userConcurrency);
  }

  /**
   * One consolidation of a user now (`lightmem consolidate`); waits for a run of the same user in progress
   * first, so two never decide the same targets at once.
   */
  async run(
    scope: ConsolidationScope,
    options: { dryRun: boolean; signal?: AbortSignal },
  ): Promise<ConsolidationSummary> {
    const key = compositeKey([scope.tenantId, scope.userId]);
    const previous = this.running.get(key);
    const next = (async () => {
      if (previous !== undefined) await previous.catch(() => undefined);
      return this.runSignals.run(options.signal ?? neverAborted, () =>
        consolidate(this.activities, { ...scope, ...this.options.limits, dryRun: options.dryRun }),
      );
    })();
    this.running.set(key, next);
    try {
      return await next;
    } finally {
      if (this.running.get(key) === next) this.running.delete(key);
    }
  }

  /** The scheduled job: consolidates the users whose run is due. */
  job(intervalMs: number): ScheduledJob {
    return {
      name: 'consolidation',
      intervalMs,
      run: async ({ signal, now }) => {
        const due: ConsolidationScope[] = [];
        const seen = new Set<string>();
        for (const user of await this.deps.store.pendingUsers()) {
          const key = compositeKey([user.tenantId, user.userId]);
          seen.add(key);
          const since = this.waitingSince.get(key) ?? now;
          this.waitingSince.set(key, since);
          if (this.running.has(key)) continue;
          if (user.pending >= this.options.minNewEntries || now - since >= this.options.maxWaitMs) {
            due.push({ tenantId: user.tenantId, userId: user.userId });
          }
        }
        for (const key of this.waitingSince.keys()) if (!seen.has(key)) this.waitingSince.delete(key);
        await Promise.all(
          due.map((scope) =>
            this.users.run(async () => {
              if (signal.aborted) return;
              try {
                const summary = await this.run(scope, { dryRun: false, signal });
                this.waitingSince.delete(compositeKey([scope.tenantId, scope.userId]));
                this.options.logger.info('consolidated', {
                  tenantId: scope.tenantId,
                  userId: scope.userId,
                  sources: summary.sources,
                  updates: summary.counts.update,
                  supersedes: summary.counts.supersede,
                  merges: summary.counts.merge,
                  ignores: summary.counts.ignore,
                  problems: summary.problems,
                });
              } catch (error) {
                if (signal.aborted) return;
                this.options.logger.error('consolidation failed', {
                  tenantId: scope.tenantId,
                  userId: scope.userId,
                  ...errorFields(error),
                });
              }
            }),
          ),
        );
      },
    };
  }

  /** Runs an activity with Temporal's retry semantics; the retry gets the last heartbeat's details. */
  private attempt<T>(name: string, work: () => Promise<T>): Promise<T> {
    return inSpan(`consolidation ${name}`, { kind: 'internal' }, () => this.attemptUntraced(name, work));
  }

  private async attemptUntraced<T>(name: string, work: () => Promise<T>): Promise<T> {
    const signal = this.runSignals.getStore() ?? neverAborted;
    let details: unknown;
    for (let attempt = 1; ; attempt++) {
      const context: ActivityContext = {
        heartbeat: (next) => {
          if (next !== undefined) details = next;
        },
        heartbeatDetails: details,
        signal,
      };
      try {
        return await this.contexts.run(context, work);
      } catch (error) {
        if (signal.aborted || !isRetryable(error) || attempt >= this.options.maxAttempts) throw error;
        const delayMs = backoffMs(attempt, this.options.retryBaseMs, this.options.retryMaxMs, 0.2);
        this.options.logger.warn('consolidation activity failed; retrying', {
          activity: name,
          attempt,
          delayMs,
          ...errorFields(error),
        });
        await sleep(delayMs, undefined, { signal });
      }
    }
  }
}
