import { InvalidInputError } from '../core/errors.js';
import { MemorySearch } from '../app/memory-search.js';
import { locomoQuestions } from '../bench/locomo-questions.js';
import { summarizeLatencies } from '../bench/latency.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { openEmbeddedContext } from './context.js';
import { segmentBench, segmentBenchUsage } from './bench-segment-command.js';
import { locomoBenchUsage, longMemEvalBenchUsage, recallBenchCommand } from './bench-recall-command.js';
import { embedBench, embedBenchUsage } from './bench-embed-command.js';
import { ProgressBar } from './progress.js';
import { distributedBenchUsage, loadBenchUsage, scaleBenchUsage } from './bench-usage.js';

export const benchUsage = `${locomoBenchUsage}
${longMemEvalBenchUsage}
${segmentBenchUsage}
${embedBenchUsage}
${distributedBenchUsage}
${loadBenchUsage}
${scaleBenchUsage}
lightmem bench search --data <locomo.json> [--queries 1000] [--limit 10] [--tenant T] [--json] [--data-dir D]
  Search latency over the file's questions (cycled to --queries), against memories already ingested into
  the data dir (run lightmem ingest first). With --json the last line is one JSON object.`;

export async function benchCommand(argv: readonly string[]): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === '--help' || kind === '-h' || kind === undefined) {
    console.log(benchUsage);
    return kind === undefined ? 1 : 0;
  }
  if (kind === 'segment') return segmentBench(rest);
  if (kind === 'locomo' || kind === 'longmemeval') return recallBenchCommand(kind, rest);
  if (kind === 'embed') return embedBench(rest);
  // Imported when run: they load the distributed-mode clients and the HTTP server.
  if (kind === 'distributed') return (await import('./bench-distributed-command.js')).distributedBench(rest);
  if (kind === 'load') return (await import('./bench-load-command.js')).loadBench(rest);
  if (kind === 'scale') return (await import('./bench-scale-command.js')).scaleBench(rest);
  if (kind !== 'search') throw new InvalidInputError(`unknown benchmark ${kind}\n${benchUsage}`, 'benchmark');
  const { values } = parse(rest, {
    ...commonOptions,
    data: { type: 'string' },
    queries: { type: 'string' },
    limit: { type: 'string' },
    tenant: { type: 'string' },
    json: { type: 'boolean' },
  });
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${benchUsage}`, 'data');
  const questions = await locomoQuestions(data);
  if (questions.length === 0) throw new InvalidInputError(`no questions in ${data}`, 'data');
  const count = intOption(values, 'queries', 1000);
  const limit = intOption(values, 'limit', 10);
  const { config, runtime } = await openEmbeddedContext(values, { logLevel: 'warn' });
  try {
    const search = new MemorySearch(runtime.store, runtime.components.embedder, runtime.config.search);
    const tenantId = stringOption(values, 'tenant') ?? config.defaultTenant;
    const stats = await runtime.store.stats({ tenantId });
    const progress = new ProgressBar('searching', process.stderr, values['json'] === true);
    // Warm-up: first statements compile and pages load; not counted.
    for (const q of questions.slice(0, 20))
      await search.search({ scope: { tenantId, userId: q.userId }, query: q.question, limit });
    const samples: number[] = [];
    let hits = 0;
    for (let i = 0; i < count; i++) {
      const q = questions[i % questions.length];
      if (q === undefined) break;
      const started = performance.now();
      const results = await search.search({
        scope: { tenantId, userId: q.userId },
        query: q.question,
        limit,
      });
      samples.push(performance.now() - started);
      if (results.length > 0) hits++;
      if (i % 50 === 0 || i === count - 1) progress.update(i + 1, count, 'queries');
    }
    progress.finish();
    const latency = summarizeLatencies(samples);
    const report = {
      benchmark: 'search',
      data,
      memories: stats.live,
      queries: count,
      limit,
      queriesWithResults: hits,
      embedder: runtime.components.embedder?.id ?? null,
      ...latency,
    };
    if (values['json'] !== true) {
      console.log(
        `search latency over ${count} queries (${stats.live} memories in tenant ${tenantId}, limit ${limit}, embedder ${report.embedder ?? 'none'}):`,
      );
      console.log(
        `  p50 ${latency.p50Ms} ms   p95 ${latency.p95Ms} ms   p99 ${latency.p99Ms} ms   mean ${latency.meanMs} ms   max ${latency.maxMs} ms`,
      );
    }
    console.log(JSON.stringify(report));
    return 0;
  } finally {
    await runtime.close();
  }
}
