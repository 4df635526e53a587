/**
 * `--consolidate`: after a recall run (ingest, drain, questions asked), sleep-time consolidation runs for
 * every case's scope, one case after the other (each timed on its own), the applier applies the ops, and
 * the same questions are asked again on the consolidated store: recall before and after in one run.
 */
import type {
  ConsolidationScope,
  ConsolidationSummary,
} from '../../workflows/consolidation/activity-types.js';
import type { EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import type { LatencySummary } from './latency.js';
import {
  memoryTotals,
  searchQuestions,
  type RecallProgress,
  type RecallRun,
  type Retrieval,
} from './recall-bench.js';

/** Consolidates one scope now (the runtime's own runner, or one over a dry-run decider) and reports it. */
export type Consolidator = (scope: ConsolidationScope) => Promise<ConsolidationSummary>;

/** The parts of the embedded runtime the consolidation step drives. */
export type ConsolidationBenchRuntime = Pick<
  EmbeddedRuntime,
  'store' | 'components' | 'config' | 'startPipeline' | 'stopPipeline' | 'waitForDrain'
>;

export interface ConsolidatedCase {
  readonly caseId: string;
  readonly userId: string;
  /** Wall time of the case's consolidation: planning, deciding, and waiting for the applier. */
  readonly seconds: number;
  readonly runs: number;
  readonly sources: number;
  readonly targets: number;
  readonly counts: ConsolidationSummary['counts'];
  readonly skipped: number;
  readonly problems: number;
  /** Current memories of the scope before and after, and their prompt-text tokens. */
  readonly memoriesBefore: number;
  readonly memoriesAfter: number;
  readonly memoryTokensBefore: number;
  readonly memoryTokensAfter: number;
}

export interface ConsolidationRun {
  /** Who decided (`near-duplicate@0.97`, `llm:<model>@<hash>`, `dry-run:llm:…`); null when nothing was planned. */
  readonly policy: string | null;
  readonly cases: readonly ConsolidatedCase[];
  /** The same questions as the recall run, asked again after consolidation. */
  readonly retrievals: readonly Retrieval[];
  readonly searchLatency: LatencySummary;
}

export interface ConsolidationBenchOptions {
  readonly consolidate: Consolidator;
  readonly searchLimit: number;
  readonly warmupQueries?: number | undefined;
  readonly onProgress?: ((progress: RecallProgress | ConsolidationProgress) => void) | undefined;
  /** Every case's summary as it finishes (its decisions included), e.g. to write them out. */
  readonly onCase?: ((caseId: string, summary: ConsolidationSummary) => void | Promise<void>) | undefined;
}

export interface ConsolidationProgress {
  readonly phase: 'consolidate';
  readonly done: number;
  readonly total: number;
  readonly detail: string;
}

export async function runConsolidationBench(
  runtime: ConsolidationBenchRuntime,
  run: RecallRun,
  options: ConsolidationBenchOptions,
): Promise<ConsolidationRun> {
  const cases: ConsolidatedCase[] = [];
  let policy: string | null = null;
  // The applier stage applies the ops; searches afterwards run on a quiet store again.
  runtime.startPipeline();
  try {
    for (const recallCase of run.cases) {
      options.onProgress?.({
        phase: 'consolidate',
        done: cases.length,
        total: run.cases.length,
        detail: `${recallCase.caseId}…`,
      });
      const scope = { tenantId: recallCase.tenantId, userId: recallCase.userId };
      const started = performance.now();
      const summary = await options.consolidate(scope);
      const seconds = (performance.now() - started) / 1000;
      policy = summary.policy ?? policy;
      await options.onCase?.(recallCase.caseId, summary);
      const after = await memoryTotals(runtime, scope);
      cases.push({
        caseId: recallCase.caseId,
        userId: recallCase.userId,
        seconds: Math.round(seconds * 1000) / 1000,
        runs: summary.runs,
        sources: summary.sources,
        targets: summary.targets,
        counts: summary.counts,
        skipped: summary.skipped,
        problems: summary.problems,
        memoriesBefore: recallCase.memories,
        memoriesAfter: after.memories,
        memoryTokensBefore: recallCase.memoryTokens,
        memoryTokensAfter: after.memoryTokens,
      });
      options.onProgress?.({
        phase: 'consolidate',
        done: cases.length,
        total: run.cases.length,
        detail: `${recallCase.caseId}: ${recallCase.memories} → ${after.memories} memories`,
      });
    }
    await runtime.waitForDrain();
  } finally {
    await runtime.stopPipeline();
  }
  const { retrievals, latency } = await searchQuestions(runtime, run.asked, {
    searchLimit: options.searchLimit,
    warmupQueries: options.warmupQueries,
    onProgress: options.onProgress,
  });
  return { policy, cases, retrievals, searchLatency: latency };
}
