import type { LlmCost } from './llm-dry-run.js';
/**
 * The report of an evidence-recall run, shared by the recall benchmarks: one JSON document
 * (`report.json`), its tables (`report.md`), the retrieval file (`retrieval.jsonl`) and the chart of
 * recall by k (`recall.svg`).
 */
import type { LightmemConfig } from '../core/config.js';
import type { PipelineComponents } from '../runtime/pipeline.js';
import {
  evidenceFigures,
  defaultRecallKs,
  defaultTokenBudgets,
  type EvidenceFigures,
  type RecallFigures,
} from './evidence-metrics.js';
import type { LatencySummary } from './latency.js';
import { sessionFigures, type SessionFigures } from './session-metrics.js';
import type { RecallRun, Retrieval } from './recall-bench.js';
import { recallChartSvg } from './recall-chart.js';

export interface RecallReport {
  readonly benchmark: string;
  /** A raw-turn baseline (`bm25-raw`, `dense-raw`, `hybrid-raw`), or null for the full pipeline. */
  readonly baseline: string | null;
  readonly data: string;
  readonly finishedAt: string;
  /** Isolated units ingested (LoCoMo samples, LongMemEval questions). */
  readonly cases: number;
  readonly questions: {
    readonly asked: number;
    readonly byCategory: Readonly<Record<string, number>>;
    /** Questions in the figures: scored categories with at least one gold id. */
    readonly scored: number;
    readonly scoredCategories: readonly string[];
  };
  readonly categoryNames: Readonly<Record<string, string>>;
  readonly ks: readonly number[];
  readonly budgets: readonly number[];
  readonly recall: EvidenceFigures;
  /**
   * LongMemEval's own session-level retrieval metrics (recall_any/recall_all/ndcg_any at 5 and 10, as its
   * scripts compute them) over the scored questions; null for other benchmarks.
   */
  readonly sessionLevel: SessionFigures | null;
  /**
   * Per budget, the share of scored questions whose whole retrieved list (search limit reached) fit in
   * the budget: for those, R@B is capped by the search limit rather than by the budget.
   */
  readonly budgetCappedBySearchLimit: Readonly<Record<string, number>>;
  readonly memories: {
    readonly total: number;
    readonly perCase: { readonly mean: number; readonly min: number; readonly max: number };
    /** Sum of the memories' prompt-text tokens. */
    readonly promptTokens: number;
    readonly sourceTurns: number;
    /** promptTokens / sourceTurns. */
    readonly tokensPerSourceTurn: number;
  };
  readonly compression: {
    readonly turns: number;
    readonly originalTokens: number;
    readonly keptTokens: number;
    /** keptTokens / originalTokens. */
    readonly keptRatio: number;
  };
  readonly ingest: {
    readonly seconds: number;
    readonly turns: number;
    /** Original (uncompressed) tokens of the turns. */
    readonly tokens: number;
    readonly turnsPerSecond: number;
    readonly tokensPerSecond: number;
    readonly accepted: number;
    readonly duplicates: number;
    readonly rejected: number;
    readonly deadLetters: number;
    readonly pipeline: string;
  };
  readonly search: { readonly limit: number } & LatencySummary;
  /**
   * LLM use while building memory (`--llm`): off (the extractive path, zeros), dry-run (what the LLM
   * extractor would send, counted with o200k, nothing sent) or live (what the endpoint reported).
   */
  readonly llm: LlmUse;
  readonly config: RecallConfig;
  readonly byCase: readonly {
    readonly caseId: string;
    readonly memories: number;
    readonly ingestSeconds: number;
    readonly questions: number;
    readonly llm: LlmCost;
  }[];
  /** Benchmark-specific facts (LoCoMo: evidence parsing). */
  readonly dataset: Readonly<Record<string, unknown>>;
  readonly files: Readonly<Record<string, string>>;
}

/** The settings that shape what is remembered and found. */
export type RecallConfig = ReturnType<typeof reportConfig>;

function reportConfig(config: LightmemConfig, components: PipelineComponents) {
  return {
    compressor: { ...config.compressor, scorer: components.scorer.version },
    segmenter: {
      bufferTokens: config.segmenter.bufferTokens,
      similarity: config.segmenter.similarity,
      rule: config.segmenter.rule,
      segmenter: components.segmenter.capability,
      version: components.segmenter.version,
    },
    summarizer: {
      thresholdTokens: config.summarizer.thresholdTokens,
      granularity: config.summarizer.granularity,
      countedRoles: config.summarizer.countedRoles,
      memorizeRoles: config.summarizer.memorizeRoles,
      extractor: components.extractor.version,
    },
    store: config.store,
    search: config.search,
    embedder: components.embedder?.id ?? null,
  };
}

export type LlmMode = 'off' | 'dry-run' | 'live';

export interface LlmUse extends LlmCost {
  readonly mode: LlmMode;
  /** How tokens were counted: o200k_base (dry run), the endpoint's usage (live), none (off). */
  readonly counting: 'o200k_base' | 'endpoint usage' | 'none';
  /** Means per case (per LoCoMo conversation, per LongMemEval question). */
  readonly perCase: LlmCost;
}

export interface RecallReportInput {
  readonly benchmark: string;
  readonly data: string;
  readonly run: RecallRun;
  readonly config: LightmemConfig;
  readonly components: PipelineComponents;
  readonly categoryNames: Readonly<Record<string, string>>;
  readonly scoredCategories: readonly string[];
  readonly dataset: Readonly<Record<string, unknown>>;
  readonly files: Readonly<Record<string, string>>;
  readonly ks?: readonly number[] | undefined;
  readonly budgets?: readonly number[] | undefined;
  readonly baseline?: string | undefined;
  /** Also compute LongMemEval's session-level metrics (source ids are `<session id>:<turn index>`). */
  readonly sessionLevel?: boolean | undefined;
  /** LLM use per case user; absent: the extractive path (off). */
  readonly llm?: { readonly mode: LlmMode; readonly costOf: (userId: string) => LlmCost } | undefined;
}

const noCost: LlmCost = { calls: 0, promptTokens: 0, completionTokens: 0 };

/** Totals and means per case of the LLM use of some cases. */
export function llmUse(mode: LlmMode, costs: readonly LlmCost[]): LlmUse {
  const total = {
    calls: sum(costs.map((c) => c.calls)),
    promptTokens: sum(costs.map((c) => c.promptTokens)),
    completionTokens: sum(costs.map((c) => c.completionTokens)),
  };
  const n = Math.max(1, costs.length);
  return {
    mode,
    counting: mode === 'off' ? 'none' : mode === 'dry-run' ? 'o200k_base' : 'endpoint usage',
    ...total,
    perCase: {
      calls: round(total.calls / n, 2),
      promptTokens: round(total.promptTokens / n, 0),
      completionTokens: round(total.completionTokens / n, 0),
    },
  };
}

export function buildRecallReport(input: RecallReportInput): RecallReport {
  const { run, config, components } = input;
  const costOf = input.llm?.costOf ?? (() => noCost);
  const costs = run.cases.map((c) => costOf(c.userId));
  const ks = input.ks ?? defaultRecallKs;
  const budgets = input.budgets ?? defaultTokenBudgets;
  const scored = run.retrievals.filter((r) => r.question.scored);
  const recall = scoredFigures(run.retrievals, ks, budgets);
  const capped = (budget: number): number => {
    const full = scored.filter((r) => r.question.gold.length > 0 && r.retrieved.length >= run.searchLimit);
    const fits = full.filter((r) => sum(r.retrieved.map((m) => m.tokens)) <= budget).length;
    return round(fits / Math.max(1, recall.overall.questions), 4);
  };
  const byCategory: Record<string, number> = {};
  for (const r of run.retrievals) {
    const key = String(r.question.category);
    byCategory[key] = (byCategory[key] ?? 0) + 1;
  }
  const memoryCounts = run.cases.map((c) => c.memories);
  const totalMemories = sum(memoryCounts);
  const promptTokens = sum(run.cases.map((c) => c.memoryTokens));
  const sourceTurns = sum(run.cases.map((c) => c.sourceTurns));
  const { compression } = run;
  const questionsPerCase = new Map<string, number>();
  for (const r of run.retrievals) questionsPerCase.set(r.caseId, (questionsPerCase.get(r.caseId) ?? 0) + 1);
  return {
    benchmark: input.benchmark,
    baseline: input.baseline ?? null,
    data: input.data,
    finishedAt: new Date().toISOString(),
    cases: run.cases.length,
    questions: {
      asked: run.retrievals.length,
      byCategory: sortedRecord(byCategory),
      scored: recall.overall.questions,
      scoredCategories: input.scoredCategories,
    },
    categoryNames: input.categoryNames,
    ks,
    budgets,
    recall,
    sessionLevel:
      input.sessionLevel === true
        ? sessionFigures(
            scored.map((r) => ({ gold: r.question.gold, ranked: r.retrieved.map((m) => m.sources) })),
          )
        : null,
    budgetCappedBySearchLimit: Object.fromEntries(budgets.map((b) => [String(b), capped(b)])),
    memories: {
      total: totalMemories,
      perCase: {
        mean: round(totalMemories / Math.max(1, run.cases.length), 1),
        min: memoryCounts.length === 0 ? 0 : Math.min(...memoryCounts),
        max: memoryCounts.length === 0 ? 0 : Math.max(...memoryCounts),
      },
      promptTokens,
      sourceTurns,
      tokensPerSourceTurn: round(promptTokens / Math.max(1, sourceTurns), 2),
    },
    compression: {
      ...compression,
      keptRatio: round(compression.keptTokens / Math.max(1, compression.originalTokens), 4),
    },
    ingest: {
      seconds: run.ingestSeconds,
      turns: compression.turns,
      tokens: compression.originalTokens,
      turnsPerSecond: round(compression.turns / Math.max(1e-9, run.ingestSeconds), 1),
      tokensPerSecond: round(compression.originalTokens / Math.max(1e-9, run.ingestSeconds), 0),
      accepted: sum(run.cases.map((c) => c.accepted)),
      duplicates: sum(run.cases.map((c) => c.duplicates)),
      rejected: sum(run.cases.map((c) => c.rejected)),
      deadLetters: run.deadLetters,
      pipeline: run.ranPipeline ? 'this process' : 'another lightmem process on the data dir',
    },
    search: { limit: run.searchLimit, ...run.searchLatency },
    llm: llmUse(input.llm?.mode ?? 'off', costs),
    config: reportConfig(config, components),
    byCase: run.cases.map((c) => ({
      caseId: c.caseId,
      memories: c.memories,
      ingestSeconds: c.ingestSeconds,
      questions: questionsPerCase.get(c.caseId) ?? 0,
      llm: costOf(c.userId),
    })),
    dataset: input.dataset,
    files: input.files,
  };
}

/** The recall figures of the scored questions of some retrievals, overall and per category. */
export function scoredFigures(
  retrievals: readonly Retrieval[],
  ks: readonly number[],
  budgets: readonly number[],
): EvidenceFigures {
  return evidenceFigures(
    retrievals
      .filter((r) => r.question.scored)
      .map((r) => ({
        category: String(r.question.category),
        gold: r.question.gold,
        ranked: r.retrieved,
      })),
    { ks, budgets },
  );
}

/** Memories per question in `retrieval.jsonl`. */
export const retrievalFileTop = 50;

/**
 * One line of `retrieval.jsonl`: the question and its top ranked memories (best first). The category is
 * named as the dataset names it (`category` for LoCoMo, `question_type` for LongMemEval).
 */
export function retrievalLine(
  retrieval: Retrieval,
  top = retrievalFileTop,
  categoryKey: 'category' | 'question_type' = 'category',
): string {
  return JSON.stringify({
    question_id: retrieval.question.questionId,
    [categoryKey]: retrieval.question.category,
    retrieved: retrieval.retrieved.slice(0, top).map((m) => ({
      id: m.id,
      score: round(m.score, 6),
      text: m.text,
      sources: m.sources,
    })),
  });
}

/** The compact figures for the last line of `--json` output. */
export function recallSummary(report: RecallReport): Record<string, unknown> {
  return {
    benchmark: report.benchmark,
    baseline: report.baseline,
    data: report.data,
    cases: report.cases,
    questions: report.questions.asked,
    scored: report.questions.scored,
    overall: flatFigures(report.recall.overall),
    ...(report.sessionLevel === null ? {} : { sessionLevel: report.sessionLevel.metrics }),
    byCategory: Object.fromEntries(
      Object.entries(report.recall.byCategory).map(([category, figures]) => [category, flatFigures(figures)]),
    ),
    memories: report.memories.total,
    tokensPerSourceTurn: report.memories.tokensPerSourceTurn,
    keptRatio: report.compression.keptRatio,
    ingestSeconds: report.ingest.seconds,
    turnsPerSecond: report.ingest.turnsPerSecond,
    searchP50Ms: report.search.p50Ms,
    searchP95Ms: report.search.p95Ms,
    searchP99Ms: report.search.p99Ms,
    embedder: report.config.embedder,
    llmMode: report.llm.mode,
    llmCalls: report.llm.calls,
    llmPromptTokens: report.llm.promptTokens,
    llmCompletionTokens: report.llm.completionTokens,
    llmPerCase: Object.fromEntries(report.byCase.map((c) => [c.caseId, c.llm])),
    out: report.files['report'] ?? null,
  };
}

/** `{ questions, "R@5": …, "All@5": …, "R@B500": … }`. */
export function flatFigures(figures: RecallFigures): Record<string, number> {
  const flat: Record<string, number> = { questions: figures.questions };
  for (const [k, value] of Object.entries(figures.recallAtK)) flat[`R@${k}`] = value;
  for (const [k, value] of Object.entries(figures.allAtK)) flat[`All@${k}`] = value;
  for (const [b, value] of Object.entries(figures.recallAtBudget)) flat[`R@B${b}`] = value;
  return flat;
}

function categoryLabel(report: RecallReport, category: string): string {
  const name = report.categoryNames[category];
  return name === undefined ? category : `${category} ${name}`;
}

/** Rows of the recall table: overall first, then each category. */
function recallRows(report: RecallReport): { label: string; figures: RecallFigures }[] {
  return [
    { label: 'overall', figures: report.recall.overall },
    ...Object.entries(report.recall.byCategory).map(([category, figures]) => ({
      label: categoryLabel(report, category),
      figures,
    })),
  ];
}

function recallColumns(report: RecallReport): { header: string; value: (f: RecallFigures) => string }[] {
  return [
    { header: 'n', value: (f) => String(f.questions) },
    ...report.ks.map((k) => ({ header: `R@${k}`, value: (f: RecallFigures) => pct(f.recallAtK[String(k)]) })),
    ...report.ks.map((k) => ({ header: `All@${k}`, value: (f: RecallFigures) => pct(f.allAtK[String(k)]) })),
    ...report.budgets.map((b) => ({
      header: `R@B${b}`,
      value: (f: RecallFigures) => pct(f.recallAtBudget[String(b)]),
    })),
  ];
}

/** The recall table as fixed-width text, for the terminal. */
export function recallSummaryTable(report: RecallReport): string {
  const columns = recallColumns(report);
  const rows = recallRows(report);
  const labelWidth = Math.max(8, ...rows.map((r) => r.label.length));
  const widths = columns.map((c) => Math.max(c.header.length, 5));
  const line = (label: string, cells: readonly string[]): string =>
    [label.padEnd(labelWidth), ...cells.map((cell, i) => cell.padStart(widths[i] ?? 5))].join('  ');
  return [
    line(
      'category',
      columns.map((c) => c.header),
    ),
    ...rows.map((r) =>
      line(
        r.label,
        columns.map((c) => c.value(r.figures)),
      ),
    ),
  ].join('\n');
}

/** report.md: what was run, the recall tables, and the cost figures. */
export function recallReportMarkdown(report: RecallReport): string {
  const columns = recallColumns(report);
  const table = (headers: readonly string[], rows: readonly (readonly string[])[]): string =>
    [
      `| ${headers.join(' | ')} |`,
      `| ${headers.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
      ...rows.map((row) => `| ${row.join(' | ')} |`),
    ].join('\n');
  const config = report.config;
  const m = report.memories;
  const c = report.compression;
  const i = report.ingest;
  const s = report.search;
  return `# Evidence recall: ${report.benchmark}

Data \`${report.data}\`, ${report.cases} case(s), ${report.questions.asked} questions asked, ${report.questions.scored} scored
(categories ${report.questions.scoredCategories.join(', ')} with at least one gold id; ${report.recall.withoutGold} without gold left out).
Embedder: ${config.embedder ?? 'none (lexical only)'}. Finished ${report.finishedAt}.

R@k: mean share of a question's gold turns among the sources of the top k memories. All@k: share of
questions with all their gold in the top k. R@B: recall of the memories taken in rank order while their
prompt text fits B tokens (approxTokenCount). Figures in %.

${table(
  ['category', ...columns.map((col) => col.header)],
  recallRows(report).map((r) => [r.label, ...columns.map((col) => col.value(r.figures))]),
)}

Mean memories that fit the budget: ${report.budgets
    .map((b) => `B${b} ${(report.recall.overall.memoriesAtBudget[String(b)] ?? 0).toFixed(1)}`)
    .join(', ')}. Questions whose ${report.search.limit} retrieved memories all fit the budget (R@B capped by
the search limit): ${report.budgets
    .map((b) => `B${b} ${pct(report.budgetCappedBySearchLimit[String(b)])}%`)
    .join(', ')}.
${sessionLevelMarkdown(report.sessionLevel)}
![recall by k](recall.svg)

## Memory and cost

${table(
  ['figure', 'value'],
  [
    ['memories', String(m.total)],
    ['memories per case (mean / min / max)', `${m.perCase.mean} / ${m.perCase.min} / ${m.perCase.max}`],
    [
      'memory prompt tokens / source turn',
      `${m.tokensPerSourceTurn} (${m.promptTokens} tokens, ${m.sourceTurns} turns)`,
    ],
    [
      'compression: kept / original tokens',
      `${c.keptTokens} / ${c.originalTokens} = ${c.keptRatio} over ${c.turns} turns`,
    ],
    ['ingest wall time', `${i.seconds} s (${i.pipeline})`],
    ['ingest throughput', `${i.turnsPerSecond} turns/s, ${i.tokensPerSecond} tokens/s`],
    ['events accepted / duplicates / rejected', `${i.accepted} / ${i.duplicates} / ${i.rejected}`],
    ['dead letters', String(i.deadLetters)],
    [
      `search latency (limit ${s.limit}, ${s.count} queries)`,
      `p50 ${s.p50Ms} ms, p95 ${s.p95Ms} ms, p99 ${s.p99Ms} ms, max ${s.maxMs} ms`,
    ],
    [
      `LLM calls / prompt / completion tokens (${report.llm.mode}, ${report.llm.counting})`,
      `${report.llm.calls} / ${report.llm.promptTokens} / ${report.llm.completionTokens}; per case ${report.llm.perCase.calls} / ${report.llm.perCase.promptTokens} / ${report.llm.perCase.completionTokens}`,
    ],
  ],
)}

## Per case

${table(
  ['case', 'memories', 'questions', 'ingest s'],
  report.byCase.map((row) => [
    row.caseId,
    String(row.memories),
    String(row.questions),
    String(row.ingestSeconds),
  ]),
)}

## Configuration

\`\`\`json
${JSON.stringify(report.config, null, 2)}
\`\`\`

## Dataset notes

\`\`\`json
${JSON.stringify(report.dataset, null, 2)}
\`\`\`
`;
}

/** recall.svg: R@k by k, overall and per category. */
export function recallChart(report: RecallReport): string {
  const values = (f: RecallFigures): number[] => report.ks.map((k) => f.recallAtK[String(k)] ?? 0);
  return recallChartSvg({
    title: `${report.benchmark}: evidence recall by k (${report.questions.scored} questions)`,
    ks: report.ks,
    series: [
      {
        label: `overall (${report.recall.overall.questions})`,
        values: values(report.recall.overall),
        emphasis: true,
      },
      ...Object.entries(report.recall.byCategory).map(([category, figures]) => ({
        label: `${categoryLabel(report, category)} (${figures.questions})`,
        values: values(figures),
      })),
    ],
  });
}

function pct(value: number | undefined): string {
  return value === undefined ? '–' : (value * 100).toFixed(1);
}

function sum(values: readonly number[]): number {
  return values.reduce((total, v) => total + v, 0);
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function sortedRecord(record: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(record).sort(([a], [b]) => {
      const [x, y] = [Number(a), Number(b)];
      return !Number.isNaN(x) && !Number.isNaN(y) ? x - y : a.localeCompare(b);
    }),
  );
}

/** LongMemEval's session-level metrics as a paragraph and a one-row table (empty for other benchmarks). */
function sessionLevelMarkdown(figures: SessionFigures | null): string {
  if (figures === null) return '';
  const names = Object.keys(figures.metrics);
  return `
LongMemEval's session-level metrics (its \`evaluate_retrieval_turn2session\`: k counts distinct sessions; a
memory is relevant when it carries a gold user turn), over the ${figures.questions} scored questions, in %:

| ${names.join(' | ')} |
| ${names.map(() => '---:').join(' | ')} |
| ${names.map((n) => pct(figures.metrics[n])).join(' | ')} |
`;
}
