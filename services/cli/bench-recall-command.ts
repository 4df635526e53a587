import { DryRunExtractor, type LlmCost } from '../bench/llm-dry-run.js';
import type { LlmMode } from '../bench/recall-report.js';
import { ledgerCosts } from '../bench/ledger-costs.js';
import { runConsolidationBench, type ConsolidationRun } from '../bench/consolidation-bench.js';
import {
  buildConsolidationReport,
  consolidationMarkdown,
  consolidationSummary,
  consolidationSummaryText,
  type ConsolidationReport,
} from '../bench/consolidation-report.js';
import type { RuntimeOptions } from '../runtime/runtime.js';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import { extractionSettings } from '../runtime/extractor-setup.js';
import { extractionRequest } from '../stages/summarizer/llm/llm-extractor.js';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InvalidInputError } from '../core/errors.js';
import type { LightmemConfig, LightmemConfigInput } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { systemClock } from '../core/ports/clock.js';
import { loadConfig } from '../runtime/load-config.js';
import { maxSearchLimit } from '../app/memory-search.js';
import { defaultRecallKs } from '../bench/evidence-metrics.js';
import { locomoCases, locomoEvidenceNotes } from '../bench/locomo-bench.js';
import { locomoCategoryNames, readLocomoSamples, scoredLocomoCategories } from '../bench/locomo-dataset.js';
import { longMemEvalCases, longMemEvalNotes } from '../bench/longmemeval-bench.js';
import { longMemEvalQuestionTypes, readLongMemEvalQuestions } from '../bench/longmemeval-dataset.js';
import { baselineFusion, isRawBaseline, rawBaselines, type RawBaseline } from '../bench/raw-turn-ingest.js';
import { runRecallBench, type RecallCase, type Retrieval } from '../bench/recall-bench.js';
import {
  buildRecallReport,
  recallChart,
  recallReportMarkdown,
  recallSummary,
  recallSummaryTable,
  retrievalLine,
} from '../bench/recall-report.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { commandConfig, commandLogger, openEmbeddedContext } from './context.js';
import { consolidationOverrides, consolidationStep } from './bench-consolidate.js';
import { ProgressBar } from './progress.js';
import { checkQaSettings, qaSummaryText, runQaStep, type QaStepOptions, type QaSummary } from './bench-qa.js';

export type RecallBenchmark = 'locomo' | 'longmemeval';

const usageTail = `[--limit N] [--search-limit 200] [--baseline ${rawBaselines.join('|')}]
    [--llm off|dry-run|live] [--consolidate] [--qa [--dry-run] [--qa-concurrency 4]] [--tenant T] [--json]
    [--data-dir D] [--config F]`;

export const locomoBenchUsage = `lightmem bench locomo --data <locomo.json> --out <dir> ${usageTail}
  Evidence recall without an LLM: ingests each sample into its own user through the full pipeline (a fresh
  data dir under --out unless --data-dir is given), asks every question through the normal search, and
  scores R@k, All@k (k = 5, 10, 20, 50) and recall within 500/1000/2000 prompt tokens on categories 1–4,
  overall and per category. --limit N: the first N samples. --search-limit: memories retrieved per question
  (50–${maxSearchLimit}; more than 50 so that the token budgets can fill). --baseline: the raw turns straight
  into the store (one memory per turn; no compression, segmentation or extraction), searched by BM25 only,
  kNN only, or the configured hybrid fusion. Writes <out>/retrieval.jsonl (top 50), report.json, report.md
  and recall.svg. With --json the last line is one JSON object.
  --qa: also answers each question from its retrieved memories with the OpenAI-compatible endpoint of
  LIGHTMEM_LLM_BASE_URL / OPENAI_BASE_URL (key OPENAI_API_KEY; models llm.model, llm.judgeModel) and grades
  it with the benchmark's judge (reference §13): accuracy beside recall, <out>/qa.jsonl. --dry-run counts
  the calls and prompt tokens and sends nothing.
  --llm: how memories are made. off (default): the extractive path, no LLM. dry-run: the extractive
  memories, and every extraction request the LLM extractor would send rendered (<out>/llm-requests.jsonl)
  and counted (calls, prompt tokens with o200k) per case, nothing sent. live: the LLM extractor on the configured endpoint; calls and
  tokens as the endpoint reports them (from the cost ledger). The report and --json hold llmCalls,
  llmPromptTokens, llmCompletionTokens and the same per case.
  --consolidate: after ingest, sleep-time consolidation of every case's user (one after the other, each
  timed), then every question asked again: recall before and after in one run, decisions by type, the
  update phase's LLM calls and prompt tokens, and wall time per case (report.json and --json: consolidation;
  <out>/retrieval-after.jsonl, consolidation-decisions.jsonl). Needs the embedding model (update queues are
  kNN). Policy by --llm: off, the LLM-free one (near-duplicates merged); dry-run, the LLM policy's requests
  rendered (<out>/consolidation-requests.jsonl) and counted with o200k, nothing sent and every case decided
  ignore, so nothing changes; live, the LLM policy on the endpoint (cost from the ledger). With --qa, the
  answers use the memories after consolidation. Without --consolidate nothing is consolidated (the
  scheduled consolidation is off in benchmarks, so that recall does not depend on timing).`;

export const longMemEvalBenchUsage = `lightmem bench longmemeval --data <longmemeval.json[.gz]> --out <dir> ${usageTail}
  The same for LongMemEval (oracle, S or M file, streamed): each question's haystack ingested into its own
  user, the question asked in that scope. Scored: non-abstention questions with gold on the user side,
  overall and per question type. --limit N: the first N questions.`;

interface BenchSource {
  readonly cases: Iterable<RecallCase> | AsyncIterable<RecallCase>;
  readonly expectedCases: number | undefined;
  readonly categoryNames: Readonly<Record<string, string>>;
  readonly scoredCategories: readonly string[];
  /** Read after the run (LongMemEval's notes fill as its questions stream by). */
  readonly dataset: () => Record<string, unknown>;
  readonly caseName: string;
  readonly categoryKey: 'category' | 'question_type';
  /** Whether LongMemEval's session-level metrics apply. */
  readonly sessionLevel: boolean;
}

async function benchSource(
  benchmark: RecallBenchmark,
  data: string,
  limit: number | undefined,
  tenantId: string,
): Promise<BenchSource> {
  if (benchmark === 'locomo') {
    const samples = await readLocomoSamples(data, { limit });
    if (samples.length === 0) throw new InvalidInputError(`no samples in ${data}`, 'data');
    return {
      cases: locomoCases(samples, tenantId),
      expectedCases: samples.length,
      categoryNames: locomoCategoryNames,
      scoredCategories: scoredLocomoCategories.map(String),
      dataset: () => ({ samples: samples.map((s) => s.sampleId), ...locomoEvidenceNotes(samples) }),
      caseName: 'samples',
      categoryKey: 'category',
      sessionLevel: false,
    };
  }
  const { notes, add } = longMemEvalNotes();
  return {
    cases: longMemEvalCases(readLongMemEvalQuestions(data, { limit }), tenantId, add),
    expectedCases: limit,
    categoryNames: Object.fromEntries(longMemEvalQuestionTypes.map((t) => [t, ''])),
    scoredCategories: [...longMemEvalQuestionTypes],
    dataset: () => ({ ...notes }),
    caseName: 'questions',
    categoryKey: 'question_type',
    sessionLevel: true,
  };
}

/** What a test gives the command instead of the configured models (an in-process embedder). */
export interface RecallBenchHooks {
  readonly models?: RuntimeOptions['models'];
}

export async function recallBenchCommand(
  benchmark: RecallBenchmark,
  argv: readonly string[],
  hooks: RecallBenchHooks = {},
): Promise<number> {
  const usage = benchmark === 'locomo' ? locomoBenchUsage : longMemEvalBenchUsage;
  const { values } = parse(argv, {
    ...commonOptions,
    data: { type: 'string' },
    out: { type: 'string' },
    limit: { type: 'string' },
    'search-limit': { type: 'string' },
    baseline: { type: 'string' },
    qa: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    'qa-concurrency': { type: 'string' },
    llm: { type: 'string' },
    consolidate: { type: 'boolean' },
    tenant: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(usage);
    return 0;
  }
  const json = values['json'] === true;
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${usage}`, 'data');
  if (!existsSync(data)) throw new InvalidInputError(`no such file: ${data}`, 'data');
  const outFlag = stringOption(values, 'out');
  if (outFlag === undefined) throw new InvalidInputError(`--out is required\n${usage}`, 'out');
  const limit = stringOption(values, 'limit') === undefined ? undefined : intOption(values, 'limit', 0);
  if (limit !== undefined && limit < 1)
    throw new InvalidInputError(`--limit must be at least 1 (got ${limit})`, 'limit');
  const baselineFlag = stringOption(values, 'baseline');
  if (baselineFlag !== undefined && !isRawBaseline(baselineFlag))
    throw new InvalidInputError(
      `--baseline must be one of ${rawBaselines.join(', ')} (got ${baselineFlag})`,
      'baseline',
    );
  const baseline: RawBaseline | undefined = baselineFlag;

  const searchLimit = intOption(values, 'search-limit', maxSearchLimit);
  const minimum = Math.max(...defaultRecallKs);
  if (searchLimit < minimum || searchLimit > maxSearchLimit)
    throw new InvalidInputError(
      `--search-limit must be from ${minimum} to ${maxSearchLimit} (got ${searchLimit})`,
      'search-limit',
    );

  const qa = values['qa'] === true;
  if (values['dry-run'] === true && !qa)
    throw new InvalidInputError('--dry-run goes with --qa (it counts the QA prompts)', 'dry-run');
  const qaConcurrency = intOption(values, 'qa-concurrency', 4);
  if (qaConcurrency < 1 || qaConcurrency > 64)
    throw new InvalidInputError(
      `--qa-concurrency must be from 1 to 64 (got ${qaConcurrency})`,
      'qa-concurrency',
    );

  const llmMode = stringOption(values, 'llm') ?? 'off';
  if (!isLlmMode(llmMode))
    throw new InvalidInputError(`--llm takes off, dry-run or live (got ${llmMode})`, 'llm');
  if (llmMode !== 'off' && baseline !== undefined)
    throw new InvalidInputError('--llm goes with the pipeline, not with --baseline (raw turns)', 'llm');
  const consolidate = values['consolidate'] === true;
  if (consolidate && baseline !== undefined)
    throw new InvalidInputError(
      '--consolidate goes with the pipeline, not with --baseline (raw turns)',
      'consolidate',
    );

  const out = resolve(outFlag);
  await mkdir(out, { recursive: true });
  const { dataDir, overrides: dirOverrides } = await benchDataDir(values, out, baseline);
  const overrides: LightmemConfigInput = {
    ...dirOverrides,
    summarizer: {
      ...dirOverrides.summarizer,
      extractor: llmMode === 'live' ? 'llm' : 'extractive',
    },
    consolidation: {
      ...dirOverrides.consolidation,
      ...consolidationOverrides(consolidate, llmMode).consolidation,
    },
  };
  const dryRun: { extractor: DryRunExtractor | null } = { extractor: null };
  const { config, runtime, logger } = await openBenchRuntime(values, overrides, hooks, {
    wrapExtractor:
      llmMode === 'dry-run'
        ? (configured, opened) => {
            const settings = extractionSettings(opened);
            dryRun.extractor = new DryRunExtractor(configured, (batch) => extractionRequest(batch, settings));
            return dryRun.extractor;
          }
        : undefined,
  });
  try {
    if (consolidate && runtime.components.embedder === null)
      throw new InvalidInputError(
        '--consolidate needs an embedding model (update queues are nearest neighbours): lightmem models fetch',
        'consolidate',
      );
    const qaOptions: QaStepOptions = {
      benchmark,
      config,
      env: process.env,
      dryRun: values['dry-run'] === true,
      concurrency: qaConcurrency,
      out,
      quiet: json,
    };
    if (qa) checkQaSettings(qaOptions);
    const embedder = runtime.components.embedder;
    if (baseline !== undefined && baseline !== 'bm25-raw' && embedder === null)
      throw new InvalidInputError(
        `--baseline ${baseline} needs an embedding model (lightmem models fetch)`,
        'baseline',
      );
    const tenantId = stringOption(values, 'tenant') ?? config.defaultTenant;
    const source = await benchSource(benchmark, data, limit, tenantId);
    const ingesting = new ProgressBar('ingesting', process.stderr, json);
    const searching = new ProgressBar('searching', process.stderr, json);
    let phase: 'ingest' | 'search' = 'ingest';
    const run = await runRecallBench(runtime, source.cases, {
      clock: systemClock,
      source: data,
      searchLimit,
      expectedCases: source.expectedCases,
      raw:
        baseline === undefined
          ? undefined
          : {
              embedder: baseline === 'bm25-raw' ? null : embedder,
              roles: new Set(config.summarizer.memorizeRoles),
            },
      onProgress: (p) => {
        if (p.phase === 'search' && phase === 'ingest') {
          ingesting.finish();
          phase = 'search';
        }
        (p.phase === 'ingest' ? ingesting : searching).update(
          p.done,
          p.total,
          p.phase === 'ingest' ? `${source.caseName}  ${p.detail}` : p.detail,
        );
      },
    });
    if (phase === 'ingest') ingesting.finish();
    searching.finish();
    // Before consolidation: the ledger then holds the extraction's calls only.
    const liveCosts = llmMode === 'live' ? await ledgerCosts(runtime.ledger) : new Map<string, LlmCost>();

    const step = consolidate
      ? await consolidationStep(runtime, { mode: llmMode, config, out, clock: systemClock, logger })
      : null;
    let consolidationRun: ConsolidationRun | null = null;
    if (step !== null) {
      const consolidating = new ProgressBar('consolidating', process.stderr, json);
      const searchingAgain = new ProgressBar('searching again', process.stderr, json);
      consolidationRun = await runConsolidationBench(runtime, run, {
        consolidate: step.consolidate,
        searchLimit,
        onCase: step.onCase,
        onProgress: (p) => {
          if (p.phase === 'consolidate') consolidating.update(p.done, p.total, p.detail);
          else {
            consolidating.finish();
            searchingAgain.update(p.done, p.total, p.detail);
          }
        },
      });
      consolidating.finish();
      searchingAgain.finish();
      await step.finish();
    }

    const files = {
      ...(qa ? { qa: join(out, 'qa.jsonl') } : {}),
      ...(dryRun.extractor === null ? {} : { llmRequests: join(out, 'llm-requests.jsonl') }),
      ...(step === null ? {} : step.files),
      retrieval: join(out, 'retrieval.jsonl'),
      report: join(out, 'report.json'),
      markdown: join(out, 'report.md'),
      chart: join(out, 'recall.svg'),
      dataDir,
    };
    const counted = dryRun.extractor;
    const report = buildRecallReport({
      llm:
        llmMode === 'off'
          ? undefined
          : {
              mode: llmMode,
              costOf: (userId) =>
                counted?.costOf(userId) ??
                liveCosts.get(userId) ?? { calls: 0, promptTokens: 0, completionTokens: 0 },
            },
      benchmark: baseline === undefined ? benchmark : `${benchmark} --baseline ${baseline}`,
      data,
      run,
      config,
      components: runtime.components,
      categoryNames: source.categoryNames,
      scoredCategories: source.scoredCategories,
      dataset: source.dataset(),
      files,
      baseline,
      sessionLevel: source.sessionLevel,
    });
    const consolidation: ConsolidationReport | null =
      step === null || consolidationRun === null
        ? null
        : buildConsolidationReport({
            mode: llmMode,
            run: consolidationRun,
            before: report,
            config,
            costOf: (userId) => step.costOf(userId),
          });
    const writeReport = async (qaResult: QaSummary | null): Promise<void> => {
      await writeFile(
        files.report,
        `${JSON.stringify({ ...report, ...(consolidation === null ? {} : { consolidation }), qa: qaResult }, null, 2)}\n`,
      );
      await writeFile(
        files.markdown,
        recallReportMarkdown(report) +
          (consolidation === null ? '' : `\n${consolidationMarkdown(consolidation, report)}`) +
          (qaResult === null ? '' : `\n## QA\n\n${qaSummaryText(qaResult)}\n`),
      );
    };
    const retrievalLines = (retrievals: readonly Retrieval[]): string =>
      retrievals.map((r) => `${retrievalLine(r, undefined, source.categoryKey)}\n`).join('');
    // Recall first, so that a failing QA step loses nothing of the (long) ingest and search.
    await writeFile(files.retrieval, retrievalLines(run.retrievals));
    const afterFile = step?.files['retrievalAfter'];
    if (consolidationRun !== null && afterFile !== undefined)
      await writeFile(afterFile, retrievalLines(consolidationRun.retrievals));
    await writeReport(null);
    if (dryRun.extractor !== null && files.llmRequests !== undefined) {
      const lines = dryRun.extractor.rendered.map((r) =>
        JSON.stringify({ userId: r.userId, promptTokens: r.promptTokens, messages: r.request.messages }),
      );
      await writeFile(files.llmRequests, lines.map((line) => `${line}\n`).join(''));
    }
    await writeFile(files.chart, recallChart(report));
    // The answers use the memories as they end up: after consolidation when there was one.
    const qaResult = qa
      ? await runQaStep(consolidationRun?.retrievals ?? run.retrievals, qaOptions)
      : undefined;
    if (qaResult !== undefined) await writeReport(qaResult);

    if (!json) {
      const m = report.memories;
      const i = report.ingest;
      const s = report.search;
      const title = benchmark === 'locomo' ? 'LoCoMo' : 'LongMemEval';
      const what = baseline === undefined ? 'full pipeline' : `baseline ${baseline}`;
      const scoredWhat =
        benchmark === 'locomo' ? 'categories 1–4 with gold' : 'non-abstention, gold on the user side';
      console.log(
        `${title} evidence recall (${what}): ${report.cases} ${source.caseName}, ${report.questions.asked} questions, ` +
          `${report.questions.scored} scored (${scoredWhat}), embedder ${report.config.embedder ?? 'none (lexical only)'}; figures in %`,
      );
      console.log(recallSummaryTable(report));
      console.log(
        `memories: ${m.total} (${m.perCase.mean} per case), ${m.tokensPerSourceTurn} prompt tokens per source turn; ` +
          `compression kept ${report.compression.keptTokens}/${report.compression.originalTokens} tokens (${report.compression.keptRatio})`,
      );
      console.log(
        `ingest ${i.seconds} s (${i.turnsPerSecond} turns/s, ${i.tokensPerSecond} tokens/s); ` +
          `search p50 ${s.p50Ms} ms, p95 ${s.p95Ms} ms, p99 ${s.p99Ms} ms; LLM (${report.llm.mode}) ${report.llm.calls} calls, ${report.llm.promptTokens} prompt tokens (${report.llm.perCase.calls} calls, ${report.llm.perCase.promptTokens} tokens per case)`,
      );
      if (consolidation !== null) console.log(consolidationSummaryText(consolidation, report));
      if (qaResult !== undefined) console.log(qaSummaryText(qaResult));
      console.log(`wrote ${files.report}, ${files.markdown}, ${files.chart}, ${files.retrieval}`);
    }
    console.log(
      JSON.stringify({
        ...recallSummary(report),
        ...(consolidation === null ? {} : { consolidation: consolidationSummary(consolidation) }),
        ...(qaResult === undefined ? {} : { qa: qaResult }),
      }),
    );
    return 0;
  } finally {
    await runtime.close();
  }
}

/**
 * Without --data-dir, a fresh data dir under --out so runs never mix. It keeps the configuration lightmem
 * would use otherwise (config file of the default data dir, environment), models dir included, so the
 * embedder is not fetched again.
 */
async function benchDataDir(
  values: Record<string, string | boolean | undefined>,
  out: string,
  baseline: RawBaseline | undefined,
): Promise<{ dataDir: string; overrides: LightmemConfigInput }> {
  const flag = stringOption(values, 'data-dir');
  const base = loadConfig({ env: process.env, file: stringOption(values, 'config') });
  // A baseline searches with its own fusion (lexical only, kNN only, or the configured hybrid).
  const store =
    baseline === undefined
      ? {}
      : {
          store: baselineFusion(baseline, base.store),
          search: { speakerBoost: 0, timeBoost: 0, sessionBoost: 0 },
        };
  if (flag !== undefined) return { dataDir: resolve(flag), overrides: store };
  const dataDir = await mkdtemp(join(out, 'data-'));
  return { dataDir, overrides: { ...base, dataDir, ...store } };
}

function isLlmMode(mode: string): mode is LlmMode {
  return mode === 'off' || mode === 'dry-run' || mode === 'live';
}

/**
 * The embedded runtime of a bench run: as configured (models fetched on first use), or over the models a
 * test gives.
 */
async function openBenchRuntime(
  values: Record<string, string | boolean | undefined>,
  overrides: LightmemConfigInput,
  hooks: RecallBenchHooks,
  extra: Pick<RuntimeOptions, 'wrapExtractor'>,
): Promise<{ config: LightmemConfig; runtime: EmbeddedRuntime; logger: Logger }> {
  if (hooks.models === undefined) return openEmbeddedContext(values, { logLevel: 'warn' }, overrides, extra);
  const config = commandConfig(values, overrides);
  const logger = commandLogger(values, config, { logLevel: 'warn' });
  const runtime = await EmbeddedRuntime.open(config, {
    ...extra,
    env: process.env,
    logger,
    clock: systemClock,
    models: hooks.models,
  });
  return { config, runtime, logger };
}
