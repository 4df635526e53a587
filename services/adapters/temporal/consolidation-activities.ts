import { Context } from '@temporalio/activity';
import {
  createActivities,
  type ActivityContext,
  type ConsolidationDeps,
} from '../../../workflows/consolidation/activities.js';
import type {
  ConsolidationActivities,
  ConsolidationScope,
} from '../../../workflows/consolidation/activity-types.js';
import { LightmemError } from '../../core/errors.js';
import { isLaterVersion } from './consolidation-entity.js';
import { activityFailure } from './temporal-errors.js';
import { countDecisions } from '../../telemetry/meters.js';
import { inSpan } from '../../telemetry/trace-context.js';

/** The dependencies of a later pipeline version's consolidation (its store, log, embedder, decider). */
export type VersionDeps = (version: string) => Promise<Omit<ConsolidationDeps, 'context'>>;

interface HeartbeatState {
  /** The details of the last heartbeat (the cursor), re-sent by the keep-alive. */
  details: unknown;
}

/** How often a running activity proves it alive between its own heartbeats: a third of the timeout. */
function keepAliveMs(heartbeatTimeoutMs: number | undefined): number | null {
  return heartbeatTimeoutMs === undefined || heartbeatTimeoutMs <= 0
    ? null
    : Math.max(100, Math.floor(heartbeatTimeoutMs / 3));
}

/**
 * The consolidation activities as a Temporal worker runs them: `createActivities` over the ports, with the
 * activity context of `@temporalio/activity` (heartbeat, the details of the previous attempt's last
 * heartbeat, cancellation). Each activity:
 * - re-sends its last heartbeat details every third of its heartbeat timeout, so a long LLM call between
 *   two of its own heartbeats does not time it out, while a dead worker's activity still does (and its
 *   retry resumes from the last cursor the activity recorded);
 * - throws a `LightmemError` as an ApplicationFailure of its code, non-retryable when the error is.
 */
export function temporalActivities(
  deps: Omit<ConsolidationDeps, 'context'>,
  versionDeps?: VersionDeps,
): ConsolidationActivities {
  const states = new WeakMap<Context, HeartbeatState>();
  const context = (): ActivityContext => {
    const current = Context.current();
    const previous: unknown = current.info.heartbeatDetails;
    let state = states.get(current);
    if (state === undefined) {
      state = { details: previous };
      states.set(current, state);
    }
    const held = state;
    return {
      heartbeat(details?: unknown) {
        if (details !== undefined) held.details = details;
        current.heartbeat(held.details);
      },
      heartbeatDetails: previous,
      signal: current.cancellationSignal,
    };
  };
  const first = createActivities({ ...deps, context });
  // A later pipeline version's scope runs over that version's store and log (resolved per activity: a
  // version dropped meanwhile fails it, not a stale store).
  const activitiesOf = async (scope: ConsolidationScope): Promise<ConsolidationActivities> => {
    if (!isLaterVersion(scope.version)) return first;
    if (versionDeps === undefined) {
      throw new LightmemError(
        'invalid_input',
        `this worker consolidates the first pipeline version only (asked for ${scope.version})`,
      );
    }
    return createActivities({ ...(await versionDeps(scope.version)), context });
  };

  function wrap<I, O>(run: (input: I) => Promise<O>): (input: I) => Promise<O> {
    return (input) => {
      const name = Context.current().info.activityType;
      return inSpan(`consolidation ${name}`, { kind: 'internal' }, () => runActivity(run, input));
    };
  }

  async function runActivity<I, O>(run: (input: I) => Promise<O>, input: I): Promise<O> {
    const current = Context.current();
    const state: HeartbeatState = { details: current.info.heartbeatDetails };
    states.set(current, state);
    const every = keepAliveMs(current.info.heartbeatTimeoutMs);
    const timer =
      every === null
        ? undefined
        : setInterval(() => {
            current.heartbeat(state.details);
          }, every);
    try {
      return await run(input);
    } catch (error) {
      throw activityFailure(error);
    } finally {
      clearInterval(timer);
    }
  }

  return {
    planConsolidation: wrap(async (input) => (await activitiesOf(input)).planConsolidation(input)),
    decideTasks: wrap(async (input) => {
      const result = await (await activitiesOf(input)).decideTasks(input);
      countDecisions(input, result);
      return result;
    }),
    finishConsolidation: wrap(async (input) => (await activitiesOf(input)).finishConsolidation(input)),
  };
}
