import { InvalidInputError } from '../core/errors.js';
import { MemorySearch } from '../app/memory-search.js';
import { locomoQuestions } from '../bench/locomo-questions.js';
import { summarizeLatencies } from '../bench/latency.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { openContext } from './context.js';
import { ProgressBar } from './progress.js';
import { LightmemError } from '../core/errors.js';
import { loadDataset } from '../ingest/index.js';
import { countBoundaries, scores, segmentStream, streamsOf } from '../bench/segment-bench.js';
import { HybridSegmenter } from '../stages/segmenter/hybrid-segmenter.js';
import { BuiltinTokenScorer } from '../stages/compressor/builtin-token-scorer.js';

export const benchUsage = `lightmem bench segment --data <longmemeval.json> [--limit N] [--rules attention,similarity,intersection,union] [--json]
  Topic-boundary precision, recall and F1: each question's sessions are fed as one stream through the
  segmenter stage; gold boundaries are the session starts (exact, and within ±1 turn).
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
  const { config, runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const search = new MemorySearch(runtime.store, runtime.components.embedder);
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

const ruleNames = ['attention', 'similarity', 'intersection', 'union'] as const;

async function segmentBench(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    data: { type: 'string' },
    limit: { type: 'string' },
    rules: { type: 'string' },
    json: { type: 'boolean' },
  });
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${benchUsage}`, 'data');
  const rules = (stringOption(values, 'rules') ?? ruleNames.join(',')).split(',');
  for (const rule of rules) {
    if (!(ruleNames as readonly string[]).includes(rule)) {
      throw new InvalidInputError(`--rules takes ${ruleNames.join(', ')} (got ${rule})`, 'rules');
    }
  }
  const limit = intOption(values, 'limit', Number.MAX_SAFE_INTEGER);
  const { config, runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const embedder = runtime.components.embedder;
    const attention = runtime.attention;
    if (embedder === null || attention === null) {
      throw new LightmemError(
        'config_invalid',
        `bench segment needs the embedder and its attention: ${runtime.warnings.join('; ')}`,
      );
    }
    const s = config.segmenter;
    const settings = {
      compression: {
        rate: config.compressor.rate,
        maxTokens: config.compressor.maxTurnTokens,
        recompressRate: config.compressor.recompressRate,
      },
      capacityTokens: s.bufferTokens,
      countedRoles: new Set(s.countedRoles),
    };
    const scorer = new BuiltinTokenScorer();
    const totals = new Map(rules.map((rule) => [rule, { predicted: 0, gold: 0, exact: 0, nearby: 0 }]));
    const started = performance.now();
    let questions = 0;
    const progress = new ProgressBar('segmenting', process.stderr, values['json'] === true);
    for await (const turns of streamsOf(loadDataset(data, 'longmemeval', {}))) {
      if (questions >= limit) break;
      questions++;
      for (const rule of rules) {
        const segmenter = new HybridSegmenter(attention, embedder, {
          thresholdStart: s.thresholdStart,
          thresholdStep: s.thresholdStep,
          thresholdMax: s.thresholdMax,
          rule: rule as (typeof ruleNames)[number],
          toleranceWindow: s.toleranceWindow,
          sinkTokens: s.sinkTokens,
        });
        const { predicted, gold } = await segmentStream(turns, segmenter, scorer, settings);
        const counts = countBoundaries(predicted, gold);
        const total = totals.get(rule);
        if (total === undefined) continue;
        total.predicted += counts.predicted;
        total.gold += counts.gold;
        total.exact += counts.exact;
        total.nearby += counts.nearby;
      }
      progress.update(questions, Math.min(limit, 206), 'questions');
    }
    progress.finish();
    const results = Object.fromEntries(
      [...totals.entries()].map(([rule, t]) => [
        rule,
        {
          ...t,
          exactScores: scores(t.exact, t.predicted, t.gold),
          withinOneTurn: scores(t.nearby, t.predicted, t.gold),
        },
      ]),
    );
    const report = {
      benchmark: 'segment',
      data,
      questions,
      models: { embedder: embedder.id, attention: attention.id },
      bufferTokens: s.bufferTokens,
      toleranceWindow: s.toleranceWindow,
      seconds: Math.round((performance.now() - started) / 100) / 10,
      results,
    };
    if (values['json'] !== true) {
      console.log(
        `topic boundaries over ${questions} questions (gold = session starts; buffer ${s.bufferTokens} tokens, window ±${s.toleranceWindow}):`,
      );
      console.log('rule           predicted  gold   exact P / R / F1          ±1 turn P / R / F1');
      for (const [rule, r] of Object.entries(results)) {
        const e = r.exactScores;
        const n = r.withinOneTurn;
        console.log(
          `${rule.padEnd(14)} ${String(r.predicted).padStart(9)} ${String(r.gold).padStart(5)}   ${e.precision.toFixed(3)} / ${e.recall.toFixed(3)} / ${e.f1.toFixed(3)}     ${n.precision.toFixed(3)} / ${n.recall.toFixed(3)} / ${n.f1.toFixed(3)}`,
        );
      }
    }
    console.log(JSON.stringify(report));
    return 0;
  } finally {
    await runtime.close();
  }
}
