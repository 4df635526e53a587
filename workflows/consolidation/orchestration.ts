// The orchestration of one consolidation, written once: Temporal's workflows call it with proxied
// activities, the embedded runner with the activities themselves. Deterministic: it only awaits
// activities (no clock, no randomness, no I/O), and it imports types only.
import type {
  ConsolidationActivities,
  ConsolidationRunInput,
  ConsolidationSummary,
  ConsolidationTask,
  DecideResult,
  DecisionSummary,
} from './activity-types.js';

/** Runs `work` over `items` with at most `limit` in flight; results in input order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, lane));
  return results;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += Math.max(1, size)) out.push(items.slice(i, i + Math.max(1, size)));
  return out;
}

function count(decisions: readonly DecisionSummary[]): ConsolidationSummary['counts'] {
  const counts = { update: 0, supersede: 0, ignore: 0, merge: 0 };
  for (const decision of decisions) {
    if (decision.merge) counts.merge++;
    else counts[decision.op]++;
  }
  return counts;
}

function targetsOf(tasks: readonly ConsolidationTask[]): number {
  return tasks.reduce((sum, task) => sum + (task.kind === 'decide' ? 1 : task.memberIds.length), 0);
}

/**
 * One consolidation of a user: plan (update queues → tasks), decide the tasks in chunks, `parallelism`
 * chunks at once, then wait for the ops to be applied and mark the sources consolidated. Repeats while
 * more new memories wait than one run takes (a dry run plans once: nothing is marked, so the same
 * sources would come back).
 */
export async function consolidate(
  activities: ConsolidationActivities,
  input: ConsolidationRunInput,
): Promise<ConsolidationSummary> {
  const who = { tenantId: input.tenantId, userId: input.userId };
  // The activities' scope names the version when there is one (JSON: an absent field is not sent).
  const scope = input.version === undefined ? who : { ...who, version: input.version };
  const decisions: DecisionSummary[] = [];
  let runs = 0;
  let sources = 0;
  let targets = 0;
  let skipped = 0;
  let policy: string | null = null;
  for (;;) {
    const plan = await activities.planConsolidation({ ...scope, dryRun: input.dryRun });
    runs++;
    policy = plan.policy;
    sources += plan.sourceIds.length;
    targets += targetsOf(plan.tasks);
    const results: DecideResult[] = await mapLimited(
      chunks(plan.tasks, input.chunkSize),
      input.parallelism,
      (tasks) => activities.decideTasks({ ...scope, tasks, plannedAt: plan.plannedAt, dryRun: input.dryRun }),
    );
    const made = results.flatMap((result) => result.decisions);
    decisions.push(...made);
    skipped += results.reduce((sum, result) => sum + result.skipped, 0);
    if (plan.sourceIds.length > 0) {
      await activities.finishConsolidation({
        ...scope,
        opIds: made.map((decision) => decision.opId),
        sourceIds: plan.sourceIds,
        plannedAt: plan.plannedAt,
        dryRun: input.dryRun,
      });
    }
    if (!plan.more || input.dryRun || plan.sourceIds.length === 0) break;
  }
  return {
    ...who,
    dryRun: input.dryRun,
    runs,
    policy,
    sources,
    targets,
    counts: count(decisions),
    skipped,
    problems: decisions.filter((decision) => decision.problem !== null).length,
    decisions,
  };
}
