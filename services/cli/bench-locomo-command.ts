import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InvalidInputError } from '../core/errors.js';
import type { LightmemConfigInput } from '../core/config.js';
import { systemClock } from '../core/ports/clock.js';
import { loadConfig } from '../runtime/load-config.js';
import { maxSearchLimit } from '../app/memory-search.js';
import { defaultRecallKs } from '../bench/evidence-metrics.js';
import { locomoCases, locomoEvidenceNotes } from '../bench/locomo-bench.js';
import { locomoCategoryNames, readLocomoSamples, scoredLocomoCategories } from '../bench/locomo-dataset.js';
import { runRecallBench } from '../bench/recall-bench.js';
import {
  buildRecallReport,
  recallChart,
  recallReportMarkdown,
  recallSummary,
  recallSummaryTable,
  retrievalLine,
} from '../bench/recall-report.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { openContext } from './context.js';
import { ProgressBar } from './progress.js';

export const locomoBenchUsage = `lightmem bench locomo --data <locomo.json> --out <dir> [--limit N] [--search-limit 200] [--tenant T] [--json]
    [--data-dir D] [--config F]
  Evidence recall without an LLM: ingests each sample into its own user through the full pipeline (a fresh
  data dir under --out unless --data-dir is given), asks every question through the normal search, and
  scores R@k, All@k (k = 5, 10, 20, 50) and recall within 500/1000/2000 prompt tokens on categories 1–4,
  overall and per category. --limit N: the first N samples. --search-limit: memories retrieved per question
  (50–${maxSearchLimit}; more than 50 so that the token budgets can fill). Writes <out>/retrieval.jsonl (top 50),
  report.json, report.md and recall.svg. With --json the last line is one JSON object.`;

export async function locomoBench(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    data: { type: 'string' },
    out: { type: 'string' },
    limit: { type: 'string' },
    'search-limit': { type: 'string' },
    tenant: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(locomoBenchUsage);
    return 0;
  }
  const json = values['json'] === true;
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${locomoBenchUsage}`, 'data');
  if (!existsSync(data)) throw new InvalidInputError(`no such file: ${data}`, 'data');
  const outFlag = stringOption(values, 'out');
  if (outFlag === undefined) throw new InvalidInputError(`--out is required\n${locomoBenchUsage}`, 'out');
  const limit = stringOption(values, 'limit') === undefined ? undefined : intOption(values, 'limit', 0);
  if (limit !== undefined && limit < 1)
    throw new InvalidInputError(`--limit must be at least 1 (got ${limit})`, 'limit');

  const searchLimit = intOption(values, 'search-limit', maxSearchLimit);
  const minimum = Math.max(...defaultRecallKs);
  if (searchLimit < minimum || searchLimit > maxSearchLimit)
    throw new InvalidInputError(
      `--search-limit must be from ${minimum} to ${maxSearchLimit} (got ${searchLimit})`,
      'search-limit',
    );

  const samples = await readLocomoSamples(data, { limit });
  if (samples.length === 0) throw new InvalidInputError(`no samples in ${data}`, 'data');
  const out = resolve(outFlag);
  await mkdir(out, { recursive: true });
  const { dataDir, overrides } = await benchDataDir(values, out);
  const { config, runtime } = await openContext(values, { logLevel: 'warn' }, overrides);
  try {
    const tenantId = stringOption(values, 'tenant') ?? config.defaultTenant;
    const ingesting = new ProgressBar('ingesting', process.stderr, json);
    const searching = new ProgressBar('searching', process.stderr, json);
    let phase: 'ingest' | 'search' = 'ingest';
    const run = await runRecallBench(runtime, locomoCases(samples, tenantId), {
      clock: systemClock,
      source: data,
      searchLimit,
      expectedCases: samples.length,
      onProgress: (p) => {
        if (p.phase === 'search' && phase === 'ingest') {
          ingesting.finish();
          phase = 'search';
        }
        (p.phase === 'ingest' ? ingesting : searching).update(
          p.done,
          p.total,
          p.phase === 'ingest' ? `samples  ${p.detail}` : p.detail,
        );
      },
    });
    if (phase === 'ingest') ingesting.finish();
    searching.finish();

    const files = {
      retrieval: join(out, 'retrieval.jsonl'),
      report: join(out, 'report.json'),
      markdown: join(out, 'report.md'),
      chart: join(out, 'recall.svg'),
      dataDir,
    };
    const report = buildRecallReport({
      benchmark: 'locomo',
      data,
      run,
      config,
      components: runtime.components,
      categoryNames: locomoCategoryNames,
      scoredCategories: scoredLocomoCategories.map(String),
      dataset: { samples: samples.map((s) => s.sampleId), ...locomoEvidenceNotes(samples) },
      files,
    });
    await writeFile(files.retrieval, run.retrievals.map((r) => `${retrievalLine(r)}\n`).join(''));
    await writeFile(files.report, `${JSON.stringify(report, null, 2)}\n`);
    await writeFile(files.markdown, recallReportMarkdown(report));
    await writeFile(files.chart, recallChart(report));

    if (!json) {
      const m = report.memories;
      const i = report.ingest;
      const s = report.search;
      console.log(
        `LoCoMo evidence recall: ${report.cases} samples, ${report.questions.asked} questions, ${report.questions.scored} scored ` +
          `(categories 1–4 with gold), embedder ${report.config.embedder ?? 'none (lexical only)'}; figures in %`,
      );
      console.log(recallSummaryTable(report));
      console.log(
        `memories: ${m.total} (${m.perCase.mean} per sample), ${m.tokensPerSourceTurn} prompt tokens per source turn; ` +
          `compression kept ${report.compression.keptTokens}/${report.compression.originalTokens} tokens (${report.compression.keptRatio})`,
      );
      console.log(
        `ingest ${i.seconds} s (${i.turnsPerSecond} turns/s, ${i.tokensPerSecond} tokens/s); ` +
          `search p50 ${s.p50Ms} ms, p95 ${s.p95Ms} ms, p99 ${s.p99Ms} ms; LLM calls ${report.llm?.calls ?? 'not measured'}`,
      );
      console.log(`wrote ${files.report}, ${files.markdown}, ${files.chart}, ${files.retrieval}`);
    }
    console.log(JSON.stringify(recallSummary(report)));
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
): Promise<{ dataDir: string; overrides: LightmemConfigInput }> {
  const flag = stringOption(values, 'data-dir');
  if (flag !== undefined) return { dataDir: resolve(flag), overrides: {} };
  const base = loadConfig({ env: process.env, file: stringOption(values, 'config') });
  const dataDir = await mkdtemp(join(out, 'data-'));
  return { dataDir, overrides: { ...base, dataDir } };
}
