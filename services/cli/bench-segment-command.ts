import { InvalidInputError, LightmemError } from '../core/errors.js';
import type { AttentionModel, SentenceAttention } from '../core/ports/segmenter.js';
import { loadDataset } from '../ingest/index.js';
import { countBoundaries, scores, segmentStream, streamsOf } from '../bench/segment-bench.js';
import { HybridSegmenter, hybridSettingsFrom } from '../stages/segmenter/hybrid-segmenter.js';
import { BuiltinTokenScorer } from '../stages/compressor/builtin-token-scorer.js';
import type { SimilarityCriterion } from '../stages/segmenter/similarity-segmenter.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { openEmbeddedContext } from './context.js';
import { ProgressBar } from './progress.js';

export const segmentBenchUsage = `lightmem bench segment --data <longmemeval.json> [--limit N] [--rules attention,similarity,intersection,union] [--criteria depth,adaptive] [--json]
  Topic-boundary precision, recall and F1: each question's sessions are fed as one stream through the
  segmenter stage; gold boundaries are the session starts (exact, and within ±1 exchange: a human turn and its replies). One row per
  combination rule × similarity criterion.`;

const ruleNames = ['attention', 'similarity', 'intersection', 'union'] as const;
const criterionNames: readonly SimilarityCriterion[] = ['depth', 'adaptive'];

function listOption<T extends string>(value: string | undefined, allowed: readonly T[], field: string): T[] {
  const items = (value ?? allowed.join(',')).split(',');
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new InvalidInputError(`--${field} takes ${allowed.join(', ')} (got ${item})`, field);
    }
  }
  return items as T[];
}

/** Every variant sees the same buffers: attention is computed once per distinct sequence (and the runtime's
 * embedder already caches vectors by text). */
class MemoAttention implements AttentionModel {
  private readonly memo = new Map<string, Promise<SentenceAttention>>();
  readonly id: string;
  constructor(private readonly inner: AttentionModel) {
    this.id = inner.id;
  }
  attention(sentences: readonly string[]): Promise<SentenceAttention> {
    const key = JSON.stringify(sentences);
    let result = this.memo.get(key);
    if (result === undefined) {
      result = this.inner.attention(sentences);
      this.memo.set(key, result);
    }
    return result;
  }
  clear(): void {
    this.memo.clear();
  }
}

export async function segmentBench(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    data: { type: 'string' },
    limit: { type: 'string' },
    rules: { type: 'string' },
    criteria: { type: 'string' },
    json: { type: 'boolean' },
  });
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${segmentBenchUsage}`, 'data');
  const rules = listOption(stringOption(values, 'rules'), ruleNames, 'rules');
  const criteria = listOption(stringOption(values, 'criteria'), criterionNames, 'criteria');
  const limit = intOption(values, 'limit', Number.MAX_SAFE_INTEGER);
  const { config, runtime } = await openEmbeddedContext(values, { logLevel: 'warn' });
  try {
    if (runtime.components.embedder === null || runtime.attention === null) {
      throw new LightmemError(
        'config_invalid',
        `bench segment needs the embedder and its attention: ${runtime.warnings.join('; ')}`,
      );
    }
    const embedder = runtime.components.embedder;
    const attention = new MemoAttention(runtime.attention);
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
    const variants = criteria.flatMap((criterion) =>
      rules
        .filter((rule) => criterion === criteria[0] || rule !== 'attention')
        .map((rule) => ({ name: rule === 'attention' ? rule : `${rule}/${criterion}`, rule, criterion })),
    );
    const totals = new Map(variants.map((v) => [v.name, { predicted: 0, gold: 0, exact: 0, nearby: 0 }]));
    const started = performance.now();
    let questions = 0;
    const progress = new ProgressBar('segmenting', process.stderr, values['json'] === true);
    for await (const turns of streamsOf(loadDataset(data, 'longmemeval', {}))) {
      if (questions >= limit) break;
      questions++;
      for (const variant of variants) {
        const segmenter = new HybridSegmenter(attention, embedder, {
          ...hybridSettingsFrom(s),
          rule: variant.rule,
          criterion: variant.criterion,
        });
        const { predicted, gold } = await segmentStream(turns, segmenter, scorer, settings);
        const counts = countBoundaries(predicted, gold);
        const total = totals.get(variant.name);
        if (total === undefined) continue;
        total.predicted += counts.predicted;
        total.gold += counts.gold;
        total.exact += counts.exact;
        total.nearby += counts.nearby;
      }
      attention.clear();
      progress.update(questions, Math.min(limit, 206), 'questions');
    }
    progress.finish();
    const results = Object.fromEntries(
      [...totals.entries()].map(([name, t]) => [
        name,
        {
          ...t,
          exactScores: scores(t.exact, t.predicted, t.gold),
          withinOneExchange: scores(t.nearby, t.predicted, t.gold),
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
      depth: { stdFactor: s.depthStdFactor, floor: s.depthFloor },
      adaptive: { start: s.thresholdStart, step: s.thresholdStep, max: s.thresholdMax },
      seconds: Math.round((performance.now() - started) / 100) / 10,
      results,
    };
    if (values['json'] !== true) {
      console.log(
        `topic boundaries over ${questions} questions (gold = session starts; buffer ${s.bufferTokens} tokens, window ±${s.toleranceWindow}, depth ${s.depthStdFactor}σ ≥ ${s.depthFloor}):`,
      );
      console.log('rule/criterion          predicted  gold   exact P / R / F1          ±1 exch. P / R / F1');
      for (const [name, r] of Object.entries(results)) {
        const e = r.exactScores;
        const n = r.withinOneExchange;
        console.log(
          `${name.padEnd(23)} ${String(r.predicted).padStart(9)} ${String(r.gold).padStart(5)}   ${e.precision.toFixed(3)} / ${e.recall.toFixed(3)} / ${e.f1.toFixed(3)}     ${n.precision.toFixed(3)} / ${n.recall.toFixed(3)} / ${n.f1.toFixed(3)}`,
        );
      }
    }
    console.log(JSON.stringify(report));
    return 0;
  } finally {
    await runtime.close();
  }
}
