// The JSON shapes between the consolidation orchestration and its activities. Types only: workflow code
// imports this file, and the Temporal bundle must not pull anything else in.

/** Whose memories: every activity is confined to one tenant and one user. */
export interface ConsolidationScope {
  readonly tenantId: string;
  readonly userId: string;
  /**
   * The pipeline version whose memories are consolidated (distributed mode: a replay's version has its
   * own store and log); absent: the first.
   */
  readonly version?: string | undefined;
}

/** How one run is cut into activities. */
export interface RunLimits {
  /** Targets decided per activity. */
  readonly chunkSize: number;
  /** Activities of one run at once. */
  readonly parallelism: number;
}

export interface ConsolidationRunInput extends ConsolidationScope, RunLimits {
  /** Decide and report, but append and apply nothing. */
  readonly dryRun: boolean;
}

/**
 * One unit of decision: a target with the newer memories that may change it (the LLM decides), or a group
 * of near-duplicates to merge (no LLM). Ids only: activities load what they need.
 */
export type ConsolidationTask =
  | {
      readonly kind: 'decide';
      readonly targetId: string;
      readonly sources: readonly { readonly id: string; readonly similarity: number }[];
    }
  | { readonly kind: 'merge'; readonly memberIds: readonly string[] };

export interface PlanInput extends ConsolidationScope {
  readonly dryRun: boolean;
}

export interface ConsolidationPlan {
  /** The new memories this run takes as sources (marked consolidated when it finishes). */
  readonly sourceIds: readonly string[];
  readonly tasks: readonly ConsolidationTask[];
  /** More new memories wait than one run takes: run again at once. */
  readonly more: boolean;
  /** Who decides (`llm:<model>@<hash>`, `near-duplicate@0.97`). */
  readonly policy: string;
  /** The run's time: every op of the run is requested at it (a retried activity writes the same ops). */
  readonly plannedAt: number;
}

export interface DecideInput extends ConsolidationScope {
  readonly tasks: readonly ConsolidationTask[];
  readonly plannedAt: number;
  readonly dryRun: boolean;
}

export type DecisionKind = 'update' | 'supersede' | 'ignore';

/** One decision as the CLI prints it. */
export interface DecisionSummary {
  readonly opId: string;
  readonly op: DecisionKind;
  /** `merge` when the LLM-free policy merged near-duplicates. */
  readonly merge: boolean;
  readonly targetIds: readonly string[];
  readonly sourceIds: readonly string[];
  readonly replacementIds: readonly string[];
  /** The new version's text (update). */
  readonly text: string | null;
  readonly reason: string;
  /** Why the decider could not decide (then the op is an ignore and the answer a dead letter). */
  readonly problem: string | null;
}

export interface DecideResult {
  readonly decisions: readonly DecisionSummary[];
  /** Tasks whose target had changed since the plan (decided by an earlier run or a user): skipped. */
  readonly skipped: number;
}

export interface FinishInput extends ConsolidationScope {
  readonly opIds: readonly string[];
  readonly sourceIds: readonly string[];
  readonly plannedAt: number;
  readonly dryRun: boolean;
}

export interface FinishResult {
  /** Sources marked consolidated. */
  readonly marked: number;
}

/** The activities of sleep-time consolidation (built by `createActivities(deps)`). */
export interface ConsolidationActivities {
  /** Update queues of the user's new memories, inverted into tasks. */
  planConsolidation(input: PlanInput): Promise<ConsolidationPlan>;
  /** Decides tasks (heartbeating a cursor, resuming from it), appends their ops to the log. */
  decideTasks(input: DecideInput): Promise<DecideResult>;
  /** Waits until the applier applied the run's ops, then marks its sources consolidated. */
  finishConsolidation(input: FinishInput): Promise<FinishResult>;
}

/** What a consolidation (one or more runs back to back) did. */
export interface ConsolidationSummary extends ConsolidationScope {
  readonly dryRun: boolean;
  readonly runs: number;
  readonly policy: string | null;
  readonly sources: number;
  readonly targets: number;
  readonly counts: {
    readonly update: number;
    readonly supersede: number;
    readonly ignore: number;
    readonly merge: number;
  };
  readonly skipped: number;
  readonly problems: number;
  readonly decisions: readonly DecisionSummary[];
}
