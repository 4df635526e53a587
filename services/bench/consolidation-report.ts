/**
 * The `--consolidate` part of a recall report: decisions by type, the update phase's LLM calls and prompt
 * tokens, consolidation wall time per case, and recall before and after on the same questions.
 */
import type { LightmemConfig } from '../core/config.js';
import type { ConsolidationRun } from './consolidation-bench.js';
import type { EvidenceFigures, RecallFigures } from './evidence-metrics.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import type { LlmCost } from './llm-dry-run.js';
import {
  flatFigures,
  llmUse,
  scoredFigures,
  type LlmMode,
  type LlmUse,
  type RecallReport,
} from './recall-report.js';

export interface DecisionCounts {
  readonly update: number;
  readonly supersede: number;
  readonly merge: number;
  readonly ignore: number;
}

export interface ConsolidationReport {
  /** `--llm`: off (the LLM-free policy), dry-run (the LLM policy's requests counted), live. */
  readonly mode: LlmMode;
  readonly policy: string | null;
  /** False in a dry run: every decision is an ignore, so recall after equals recall before. */
  readonly changesMemories: boolean;
  readonly note: string;
  readonly settings: {
    readonly topK: number;
    readonly keepTopN: number;
    readonly threshold: number;
    readonly nearDuplicate: number;
    readonly maxSourcesPerRun: number;
  };
  /** Decisions by type (a merge of near-duplicates is an update op, counted here as a merge). */
  readonly counts: DecisionCounts;
  readonly sources: number;
  readonly targets: number;
  /** Decisions the decider could not make (ignores with a dead letter). */
  readonly problems: number;
  /** Update-phase LLM use (dry-run: o200k counts of the requests; live: the ledger's calls). */
  readonly llm: LlmUse;
  readonly wallTime: {
    readonly cases: number;
    readonly totalSeconds: number;
    readonly meanSeconds: number;
    readonly p50Seconds: number;
    readonly p95Seconds: number;
    readonly maxSeconds: number;
  };
  readonly memories: {
    readonly before: number;
    readonly after: number;
    readonly promptTokensBefore: number;
    readonly promptTokensAfter: number;
  };
  readonly recallBefore: EvidenceFigures;
  readonly recallAfter: EvidenceFigures;
  readonly searchAfter: { readonly limit: number } & LatencySummary;
  readonly byCase: readonly {
    readonly caseId: string;
    readonly seconds: number;
    readonly sources: number;
    readonly targets: number;
    readonly counts: DecisionCounts;
    readonly problems: number;
    readonly llm: LlmCost;
    readonly memoriesBefore: number;
    readonly memoriesAfter: number;
  }[];
}

export interface ConsolidationReportInput {
  readonly mode: LlmMode;
  readonly run: ConsolidationRun;
  /** The recall report of the same run (before consolidation): its ks, budgets and figures. */
  readonly before: RecallReport;
  readonly config: LightmemConfig;
  /** The update phase's LLM use per case user. */
  readonly costOf: (userId: string) => LlmCost;
}

function noteOf(mode: LlmMode, nearDuplicate: number): string {
  switch (mode) {
    case 'off':
      return `LLM-free policy: near-duplicates (cosine >= ${nearDuplicate}, same speaker and kind) merged into one version citing the turns of all; no LLM call.`;
    case 'dry-run':
      return 'LLM policy, dry run: every update request the LLM decider would send was rendered and counted (o200k), nothing was sent, and every case was decided ignore, so no memory changed: recall after equals recall before.';
    case 'live':
      return 'LLM policy on the configured endpoint: update / supersede / ignore per target; calls and tokens as the endpoint reported them (cost ledger, calls made during consolidation).';
  }
}

export function buildConsolidationReport(input: ConsolidationReportInput): ConsolidationReport {
  const { run, before, config, mode } = input;
  const c = config.consolidation;
  const costs = run.cases.map((item) => input.costOf(item.userId));
  const seconds = summarizeLatencies(run.cases.map((item) => item.seconds * 1000));
  const counts = { update: 0, supersede: 0, merge: 0, ignore: 0 };
  for (const item of run.cases) {
    counts.update += item.counts.update;
    counts.supersede += item.counts.supersede;
    counts.merge += item.counts.merge;
    counts.ignore += item.counts.ignore;
  }
  return {
    mode,
    policy: run.policy,
    changesMemories: mode !== 'dry-run',
    note: noteOf(mode, c.nearDuplicate),
    settings: {
      topK: c.topK,
      keepTopN: c.keepTopN,
      threshold: c.threshold,
      nearDuplicate: c.nearDuplicate,
      maxSourcesPerRun: c.maxSourcesPerRun,
    },
    counts,
    sources: sum(run.cases.map((item) => item.sources)),
    targets: sum(run.cases.map((item) => item.targets)),
    problems: sum(run.cases.map((item) => item.problems)),
    llm: llmUse(mode, costs),
    wallTime: {
      cases: run.cases.length,
      totalSeconds: round(sum(run.cases.map((item) => item.seconds)), 3),
      meanSeconds: round(seconds.meanMs / 1000, 3),
      p50Seconds: round(seconds.p50Ms / 1000, 3),
      p95Seconds: round(seconds.p95Ms / 1000, 3),
      maxSeconds: round(seconds.maxMs / 1000, 3),
    },
    memories: {
      before: sum(run.cases.map((item) => item.memoriesBefore)),
      after: sum(run.cases.map((item) => item.memoriesAfter)),
      promptTokensBefore: sum(run.cases.map((item) => item.memoryTokensBefore)),
      promptTokensAfter: sum(run.cases.map((item) => item.memoryTokensAfter)),
    },
    recallBefore: before.recall,
    recallAfter: scoredFigures(run.retrievals, before.ks, before.budgets),
    searchAfter: { limit: before.search.limit, ...run.searchLatency },
    byCase: run.cases.map((item, i) => ({
      caseId: item.caseId,
      seconds: item.seconds,
      sources: item.sources,
      targets: item.targets,
      counts: { ...item.counts },
      problems: item.problems,
      llm: costs[i] ?? { calls: 0, promptTokens: 0, completionTokens: 0 },
      memoriesBefore: item.memoriesBefore,
      memoriesAfter: item.memoriesAfter,
    })),
  };
}

/** The `consolidation` object of the `--json` last line. */
export function consolidationSummary(report: ConsolidationReport): Record<string, unknown> {
  return {
    mode: report.mode,
    policy: report.policy,
    changesMemories: report.changesMemories,
    counts: report.counts,
    sources: report.sources,
    targets: report.targets,
    problems: report.problems,
    llmCalls: report.llm.calls,
    llmPromptTokens: report.llm.promptTokens,
    llmCompletionTokens: report.llm.completionTokens,
    llmPerCaseMean: report.llm.perCase,
    wallSeconds: {
      total: report.wallTime.totalSeconds,
      mean: report.wallTime.meanSeconds,
      p50: report.wallTime.p50Seconds,
      p95: report.wallTime.p95Seconds,
      max: report.wallTime.maxSeconds,
    },
    memoriesBefore: report.memories.before,
    memoriesAfter: report.memories.after,
    recallBefore: flatFigures(report.recallBefore.overall),
    recallAfter: flatFigures(report.recallAfter.overall),
    byCategoryAfter: Object.fromEntries(
      Object.entries(report.recallAfter.byCategory).map(([category, f]) => [category, flatFigures(f)]),
    ),
    byCase: Object.fromEntries(
      report.byCase.map((row) => [
        row.caseId,
        {
          counts: row.counts,
          calls: row.llm.calls,
          promptTokens: row.llm.promptTokens,
          completionTokens: row.llm.completionTokens,
          seconds: row.seconds,
          memoriesBefore: row.memoriesBefore,
          memoriesAfter: row.memoriesAfter,
        },
      ]),
    ),
  };
}

/** The recall columns shown before → after: R@k and R@B at the report's ks and budgets. */
function columns(
  before: RecallReport,
): { header: string; value: (f: RecallFigures) => number | undefined }[] {
  return [
    ...before.ks.map((k) => ({ header: `R@${k}`, value: (f: RecallFigures) => f.recallAtK[String(k)] })),
    ...before.budgets.map((b) => ({
      header: `R@B${b}`,
      value: (f: RecallFigures) => f.recallAtBudget[String(b)],
    })),
  ];
}

/** Rows of the before/after table: overall, then each category, each as before, after and the change. */
function recallRows(report: ConsolidationReport, before: RecallReport): { label: string; cells: string[] }[] {
  const cols = columns(before);
  const rows: { label: string; cells: string[] }[] = [];
  const add = (label: string, b: RecallFigures | undefined, a: RecallFigures | undefined): void => {
    if (b === undefined || a === undefined) return;
    rows.push({ label: `${label} before`, cells: cols.map((col) => pct(col.value(b))) });
    rows.push({ label: `${label} after`, cells: cols.map((col) => pct(col.value(a))) });
    rows.push({
      label: `${label} change`,
      cells: cols.map((col) => delta(col.value(b), col.value(a))),
    });
  };
  add('overall', report.recallBefore.overall, report.recallAfter.overall);
  for (const [category, figures] of Object.entries(report.recallBefore.byCategory)) {
    const name = before.categoryNames[category];
    const label = name === undefined || name === '' ? category : `${category} ${name}`;
    add(label, figures, report.recallAfter.byCategory[category]);
  }
  return rows;
}

/** A few lines for the terminal. */
export function consolidationSummaryText(report: ConsolidationReport, before: RecallReport): string {
  const { counts, llm, wallTime: w, memories: m } = report;
  const cols = columns(before);
  const overall = recallRows(report, before).slice(0, 3);
  const width = Math.max(...overall.map((row) => row.label.length));
  return [
    `consolidation (${report.mode}, policy ${report.policy ?? 'none'}): ${counts.update} update, ${counts.supersede} supersede, ${counts.merge} merge, ${counts.ignore} ignore over ${report.targets} targets from ${report.sources} sources; ${report.problems} problems`,
    `  memories ${m.before} → ${m.after}; update-phase LLM ${llm.calls} calls, ${llm.promptTokens} prompt tokens (${llm.perCase.calls} calls, ${llm.perCase.promptTokens} tokens per case; ${llm.counting})`,
    `  wall time per case p50 ${w.p50Seconds} s, mean ${w.meanSeconds} s, max ${w.maxSeconds} s; total ${w.totalSeconds} s`,
    `  ${''.padEnd(width)}  ${cols.map((col) => col.header.padStart(8)).join('')}`,
    ...overall.map(
      (row) => `  ${row.label.padEnd(width)}  ${row.cells.map((cell) => cell.padStart(8)).join('')}`,
    ),
    ...(report.changesMemories ? [] : ['  (dry run: nothing changed, so after equals before)']),
  ].join('\n');
}

/** The section of report.md. */
export function consolidationMarkdown(report: ConsolidationReport, before: RecallReport): string {
  const table = (headers: readonly string[], rows: readonly (readonly string[])[]): string =>
    [
      `| ${headers.join(' | ')} |`,
      `| ${headers.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
      ...rows.map((row) => `| ${row.join(' | ')} |`),
    ].join('\n');
  const { counts, llm, wallTime: w, memories: m, settings: s, searchAfter: q } = report;
  return `## Sleep-time consolidation

${report.note}

Policy \`${report.policy ?? 'none (nothing planned)'}\`; update queues top-k ${s.topK}, keep ${s.keepTopN}, similarity >= ${s.threshold}
(near-duplicates >= ${s.nearDuplicate}); at most ${s.maxSourcesPerRun} sources per run.

${table(
  ['figure', 'value'],
  [
    [
      'decisions: update / supersede / merge / ignore',
      `${counts.update} / ${counts.supersede} / ${counts.merge} / ${counts.ignore}`,
    ],
    ['sources / targets', `${report.sources} / ${report.targets}`],
    ['problems (ignores with a dead letter)', String(report.problems)],
    ['memories before → after', `${m.before} → ${m.after}`],
    ['memory prompt tokens before → after', `${m.promptTokensBefore} → ${m.promptTokensAfter}`],
    [
      `update-phase LLM calls / prompt / completion tokens (${llm.mode}, ${llm.counting})`,
      `${llm.calls} / ${llm.promptTokens} / ${llm.completionTokens}; per case ${llm.perCase.calls} / ${llm.perCase.promptTokens} / ${llm.perCase.completionTokens}`,
    ],
    [
      `consolidation wall time per case (${w.cases} cases)`,
      `p50 ${w.p50Seconds} s, mean ${w.meanSeconds} s, p95 ${w.p95Seconds} s, max ${w.maxSeconds} s; total ${w.totalSeconds} s`,
    ],
    [
      `search latency after (limit ${q.limit}, ${q.count} queries)`,
      `p50 ${q.p50Ms} ms, p95 ${q.p95Ms} ms, p99 ${q.p99Ms} ms`,
    ],
  ],
)}

Recall before and after consolidation, same questions (%; change in points):

${table(
  ['', ...columns(before).map((col) => col.header)],
  recallRows(report, before).map((row) => [row.label, ...row.cells]),
)}

Per case:

${table(
  [
    'case',
    'sources',
    'targets',
    'update',
    'supersede',
    'merge',
    'ignore',
    'LLM calls',
    'prompt tokens',
    'seconds',
    'memories',
  ],
  report.byCase.map((row) => [
    row.caseId,
    String(row.sources),
    String(row.targets),
    String(row.counts.update),
    String(row.counts.supersede),
    String(row.counts.merge),
    String(row.counts.ignore),
    String(row.llm.calls),
    String(row.llm.promptTokens),
    String(row.seconds),
    `${row.memoriesBefore} → ${row.memoriesAfter}`,
  ]),
)}
`;
}

function pct(value: number | undefined): string {
  return value === undefined ? '–' : (value * 100).toFixed(1);
}

function delta(before: number | undefined, after: number | undefined): string {
  if (before === undefined || after === undefined) return '–';
  const points = (after - before) * 100;
  return `${points >= 0 ? '+' : ''}${points.toFixed(1)}`;
}

function sum(values: readonly number[]): number {
  return values.reduce((total, v) => total + v, 0);
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
