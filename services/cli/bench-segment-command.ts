import { fork } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { InvalidInputError, LightmemError } from '../core/errors.js';
import type { AttentionModel, SentenceAttention } from '../core/ports/segmenter.js';
import { loadDataset } from '../ingest/index.js';
import { countBoundaries, scores, segmentStream, streamsOf } from '../bench/segment-bench.js';
import { HybridSegmenter, hybridSettingsFrom } from '../stages/segmenter/hybrid-segmenter.js';
import { BuiltinTokenScorer } from '../stages/compressor/builtin-token-scorer.js';
import type { SimilarityCriterion } from '../stages/segmenter/similarity-segmenter.js';
import {
  boundaryScores,
  crossValidate,
  defaultGridSpec,
  parameterChoices,
  pooled,
  segmentGrid,
  selectionCriteria,
  settingLabel,
  type QuestionCounts,
  type SegmentSetting,
} from '../bench/segment-cv.js';
import { StreamSignals, gridCounts } from '../bench/segment-cv-grid.js';
import type { BoundaryCounts } from '../bench/segment-bench.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { commandConfig, openEmbeddedContext } from './context.js';
import { ProgressBar } from './progress.js';

export const segmentBenchUsage = `lightmem bench segment --data <longmemeval.json> [--limit N] [--rules attention,similarity,intersection,union] [--criteria depth,adaptive] [--json]
lightmem bench segment --data <longmemeval.json> --cv [K] [--select f1-near,f1-exact,f2-near,f2-exact] [--buffers 512,…] [--unit-words 32,64,128] [--workers N] [--table <file.json>] [--limit N] [--json]
  Topic-boundary precision, recall and F1: each question's sessions are fed as one stream through the
  segmenter stage; gold boundaries are the session starts (exact, and within ±1 exchange: a human turn and its replies). One row per
  combination rule × similarity criterion.
  --cv K (5 when no K): K-fold cross-validation of the segmenter's settings. Questions go to folds by a hash
  of their id; each fold's setting is chosen on the other folds from a grid (rule, window, sink tokens,
  similarity criterion and its parameters, unit words, buffer tokens) by --select (default f2-exact: F2 of
  exact boundaries, pooled; a list reports each) and scored on the held-out fold. --workers processes
  (default 2) share the questions. Signals are computed once per question and
  the grid is evaluated over them. --table writes the per-question counts of every setting.`;

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

/** `--cv` alone means 5 folds (parseArgs wants a value for a string option). */
function withFoldCount(argv: readonly string[]): string[] {
  const out = [...argv];
  const at = out.indexOf('--cv');
  const next = out[at + 1];
  if (at >= 0 && (next === undefined || next.startsWith('-'))) out.splice(at + 1, 0, '5');
  return out;
}

export async function segmentBench(argv: readonly string[]): Promise<number> {
  const normalized = withFoldCount(argv);
  const { values } = parse(normalized, {
    ...commonOptions,
    data: { type: 'string' },
    limit: { type: 'string' },
    rules: { type: 'string' },
    criteria: { type: 'string' },
    cv: { type: 'string' },
    select: { type: 'string' },
    buffers: { type: 'string' },
    'unit-words': { type: 'string' },
    table: { type: 'string' },
    workers: { type: 'string' },
    shard: { type: 'string' },
    json: { type: 'boolean' },
  });
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${segmentBenchUsage}`, 'data');
  if (stringOption(values, 'cv') !== undefined) {
    if (stringOption(values, 'rules') !== undefined || stringOption(values, 'criteria') !== undefined)
      throw new InvalidInputError('--cv tunes over its own grid: drop --rules and --criteria', 'cv');
    return segmentCrossValidation(values, data, normalized);
  }
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
        minWords: config.compressor.minWords,
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

type Values = Record<string, string | boolean | undefined>;

function intList(
  value: string | undefined,
  fallback: readonly number[],
  field: string,
  zero = false,
): number[] {
  if (value === undefined) return [...fallback];
  return value.split(',').map((item) => {
    const n = Number(item);
    if (!Number.isInteger(n) || n < (zero ? 0 : 1))
      throw new InvalidInputError(
        `--${field} takes ${zero ? 'non-negative' : 'positive'} integers (got ${item})`,
        field,
      );
    return n;
  });
}

const fmt = (c: BoundaryCounts): string => {
  const { exact: e, withinOneExchange: n } = boundaryScores(c);
  return `${e.precision.toFixed(3)} / ${e.recall.toFixed(3)} / ${e.f1.toFixed(3)}   ${n.precision.toFixed(3)} / ${n.recall.toFixed(3)} / ${n.f1.toFixed(3)}`;
};

interface Work {
  attention: number;
  embedded: number;
  runs: number;
  attentionMs: number;
  embeddingMs: number;
}

/** What a worker process sends back: its questions' rows (counts flattened) and its work. */
interface ShardMessage {
  readonly type: 'progress' | 'rows';
  readonly done?: number;
  readonly rows?: { index: number; id: string; flat: number[] }[];
  readonly work?: Work;
}

const flatten = (counts: readonly BoundaryCounts[]): number[] =>
  counts.flatMap((c) => [c.predicted, c.gold, c.exact, c.nearby]);
const unflatten = (flat: readonly number[]): BoundaryCounts[] =>
  Array.from({ length: flat.length / 4 }, (_, i) => ({
    predicted: flat[4 * i] ?? 0,
    gold: flat[4 * i + 1] ?? 0,
    exact: flat[4 * i + 2] ?? 0,
    nearby: flat[4 * i + 3] ?? 0,
  }));

/** `--shard i/n` (set by the parent on its worker processes): questions with index ≡ i (mod n). */
function shardOption(values: Values): { index: number; count: number } | null {
  const value = stringOption(values, 'shard');
  if (value === undefined) return null;
  const match = /^(\d+)\/(\d+)$/.exec(value);
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (match === null || count < 1 || index >= count)
    throw new InvalidInputError(`--shard takes i/n with i < n (got ${value})`, 'shard');
  return { index, count };
}

/** Forks `count − 1` copies of this command, each filling the rows of one shard; resolves with all of them. */
function startWorkers(
  argv: readonly string[],
  count: number,
  modelsDir: string,
  onProgress: (worker: number, done: number) => void,
): Promise<{ rows: { index: number; id: string; counts: BoundaryCounts[] }[]; work: Work[] }>[] {
  const script = process.argv[1];
  if (script === undefined) throw new LightmemError('internal', 'cannot find the CLI script to fork');
  return Array.from({ length: count - 1 }, (_, k) => {
    const worker = k + 1;
    return new Promise((resolve, reject) => {
      const child = fork(script, ['bench', 'segment', ...argv, '--shard', `${worker}/${count}`], {
        env: { ...process.env, LIGHTMEM_MODELS_DIR: modelsDir },
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      let result: ShardMessage | undefined;
      child.on('message', (message: ShardMessage) => {
        if (message.type === 'progress') onProgress(worker, message.done ?? 0);
        else result = message;
      });
      child.on('error', reject);
      child.on('exit', (code) => {
        if (code !== 0 || result?.rows === undefined || result.work === undefined) {
          reject(new LightmemError('internal', `bench segment worker ${worker} exited with ${code}`));
          return;
        }
        resolve({
          rows: result.rows.map((r) => ({ index: r.index, id: r.id, counts: unflatten(r.flat) })),
          work: [result.work],
        });
      });
    });
  });
}

/**
 * `bench segment --cv K`: fill the question × setting table once (over `--workers` processes, each taking
 * every n-th question), then cross-validate over it.
 */
async function segmentCrossValidation(
  values: Values,
  data: string,
  argv: readonly string[],
): Promise<number> {
  const folds = intOption(values, 'cv', 5);
  if (folds < 2) throw new InvalidInputError(`--cv needs at least 2 folds (got ${folds})`, 'cv');
  const selects = listOption(stringOption(values, 'select') ?? 'f2-exact', selectionCriteria, 'select');
  const limit = intOption(values, 'limit', Number.MAX_SAFE_INTEGER);
  const shard = shardOption(values);
  const isWorker = shard !== null && process.send !== undefined;
  const workers = shard?.count ?? intOption(values, 'workers', Math.min(2, availableParallelism()));
  if (workers < 1) throw new InvalidInputError(`--workers must be at least 1 (got ${workers})`, 'workers');
  const quiet = values['json'] === true || isWorker;
  // Several processes share the cores: one intra-op thread each unless the configuration says otherwise.
  const threads =
    workers > 1 && commandConfig(values).models.threads === undefined
      ? Math.max(1, Math.floor(availableParallelism() / workers))
      : undefined;
  const { config, runtime } = await openEmbeddedContext(
    values,
    { logLevel: 'warn' },
    threads === undefined ? {} : { models: { threads } },
  );
  try {
    if (runtime.components.embedder === null || runtime.attention === null) {
      throw new LightmemError(
        'config_invalid',
        `bench segment needs the embedder and its attention: ${runtime.warnings.join('; ')}`,
      );
    }
    const s = config.segmenter;
    const base: SegmentSetting = { ...hybridSettingsFrom(s), bufferTokens: s.bufferTokens };
    const grid = segmentGrid(base, {
      ...defaultGridSpec,
      bufferTokens: intList(stringOption(values, 'buffers'), [s.bufferTokens], 'buffers'),
      unitWords: intList(stringOption(values, 'unit-words'), defaultGridSpec.unitWords, 'unit-words', true),
    });
    const streamSettings = {
      compression: {
        rate: config.compressor.rate,
        maxTokens: config.compressor.maxTurnTokens,
        recompressRate: config.compressor.recompressRate,
        minWords: config.compressor.minWords,
      },
      countedRoles: new Set(s.countedRoles),
    };
    const scorer = new BuiltinTokenScorer();
    const started = performance.now();
    const progress = new ProgressBar(`segmenting (${grid.length} settings)`, process.stderr, quiet);
    const done = new Array<number>(workers).fill(0);
    const showProgress = (): void =>
      progress.update(
        done.reduce((a, b) => a + b, 0),
        Math.min(limit, 206),
        'questions',
      );
    const others = isWorker
      ? []
      : startWorkers(argv, workers, config.models.dir ?? '', (worker, n) => {
          done[worker] = n;
          showProgress();
        });
    const mine: { index: number; id: string; counts: BoundaryCounts[] }[] = [];
    const work: Work = { attention: 0, embedded: 0, runs: 0, attentionMs: 0, embeddingMs: 0 };
    let index = -1;
    for await (const turns of streamsOf(loadDataset(data, 'longmemeval', {}))) {
      if (++index >= limit) break;
      if (index % workers !== (shard?.index ?? 0)) continue;
      const signals = new StreamSignals(runtime.attention, runtime.components.embedder);
      const { counts, runs } = await gridCounts(turns, grid, signals, scorer, streamSettings);
      mine.push({ index, id: turns[0]?.userId ?? String(index), counts });
      work.attention += signals.calls.attention;
      work.embedded += signals.calls.embedded;
      work.attentionMs += signals.calls.attentionMs;
      work.embeddingMs += signals.calls.embeddingMs;
      work.runs += runs;
      done[0] = mine.length;
      if (isWorker) process.send?.({ type: 'progress', done: mine.length } satisfies ShardMessage);
      else showProgress();
    }
    if (isWorker) {
      const message: ShardMessage = {
        type: 'rows',
        rows: mine.map((r) => ({ index: r.index, id: r.id, flat: flatten(r.counts) })),
        work,
      };
      await new Promise<void>((resolve, reject) =>
        process.send?.(message, undefined, {}, (error) => (error === null ? resolve() : reject(error))),
      );
      return 0;
    }
    const results = await Promise.all(others);
    progress.finish();
    const rows: QuestionCounts[] = [...mine, ...results.flatMap((r) => r.rows)]
      .sort((a, b) => a.index - b.index)
      .map(({ id, counts }) => ({ id, counts }));
    const works = [work, ...results.flatMap((r) => r.work)];
    const calls = {
      attention: works.reduce((a, w) => a + w.attention, 0),
      embedded: works.reduce((a, w) => a + w.embedded, 0),
      runs: works.reduce((a, w) => a + w.runs, 0),
      attentionSeconds: Math.round(works.reduce((a, w) => a + w.attentionMs, 0) / 100) / 10,
      embeddingSeconds: Math.round(works.reduce((a, w) => a + w.embeddingMs, 0) / 100) / 10,
      workers,
    };
    const tableSeconds = (performance.now() - started) / 1000;
    const label = (i: number): string => settingLabel(grid[i] as SegmentSetting);
    const table = stringOption(values, 'table');
    if (table !== undefined) {
      await writeFile(
        table,
        JSON.stringify({ data, settings: grid.map((g) => ({ label: settingLabel(g), ...g })), rows }),
      );
    }
    const round = (v: number): number => Math.round(v * 10_000) / 10_000;
    const selections = selects.map((select) => {
      const cv = crossValidate(rows, grid.length, folds, select);
      const spread = (pick: (c: BoundaryCounts) => number): { min: number; max: number } => {
        const v = cv.folds.map((f) => pick(f.heldOut));
        return { min: Math.min(...v), max: Math.max(...v) };
      };
      return {
        select,
        heldOut: { counts: cv.heldOut, ...boundaryScores(cv.heldOut) },
        heldOutSpread: {
          exactRecall: spread((c) => boundaryScores(c).exact.recall),
          exactF1: spread((c) => boundaryScores(c).exact.f1),
          nearRecall: spread((c) => boundaryScores(c).withinOneExchange.recall),
          nearF1: spread((c) => boundaryScores(c).withinOneExchange.f1),
        },
        perFold: cv.folds.map((f) => ({
          fold: f.fold,
          questions: f.questions,
          chosen: label(f.chosen),
          trainScore: round(f.trainScore),
          heldOut: { counts: f.heldOut, ...boundaryScores(f.heldOut) },
          baseHeldOut: { counts: f.baseHeldOut, ...boundaryScores(f.baseHeldOut) },
        })),
        chosenOnAll: {
          label: label(cv.allQuestions.index),
          setting: grid[cv.allQuestions.index],
          score: round(cv.allQuestions.score),
          counts: cv.allQuestions.counts,
          ...boundaryScores(cv.allQuestions.counts),
        },
        choices: parameterChoices(cv.folds.map((f) => grid[f.chosen] as SegmentSetting)),
      };
    });
    const base0 = pooled(rows, 0);
    const report = {
      benchmark: 'segment-cv',
      data,
      questions: rows.length,
      folds,
      gridSize: grid.length,
      models: { embedder: runtime.components.embedder.id, attention: runtime.attention.id },
      base: { label: label(0), counts: base0, ...boundaryScores(base0) },
      selections,
      work: { ...calls, tableSeconds: Math.round(tableSeconds * 10) / 10 },
      seconds: Math.round(((performance.now() - started) / 1000) * 10) / 10,
    };
    if (!quiet) {
      console.log(
        `segmentation, ${folds}-fold cross-validation over ${rows.length} questions, ${grid.length} settings (P / R / F1 exact, then within ±1 exchange)`,
      );
      console.log(`base (today's configuration), all questions: ${label(0)}: ${fmt(base0)}`);
      for (const sel of selections) {
        console.log(`\nchosen by ${sel.select} on the other folds:`);
        console.log(
          `${'fold'.padEnd(5)}${'n'.padEnd(5)}${'chosen (train score)'.padEnd(76)}${'held-out'.padEnd(46)}base on the fold`,
        );
        for (const f of sel.perFold) {
          console.log(
            `${String(f.fold).padEnd(5)}${String(f.questions).padEnd(5)}${`${f.chosen} (${f.trainScore.toFixed(3)})`.padEnd(76)}${fmt(f.heldOut.counts).padEnd(46)}${fmt(f.baseHeldOut.counts)}`,
          );
        }
        console.log(`pooled held-out: ${fmt(sel.heldOut.counts)}`);
        console.log(
          `per-fold choices: ${Object.entries(sel.choices)
            .map(([name, values]) => `${name} ${values}`)
            .join('; ')}`,
        );
        console.log(
          `chosen on all questions (in-sample): ${sel.chosenOnAll.label}: ${fmt(sel.chosenOnAll.counts)}`,
        );
      }
      console.log(
        `\n${calls.workers} worker(s): ${calls.attention} attention sequences (${calls.attentionSeconds} s), ${calls.embedded} texts embedded (${calls.embeddingSeconds} s), ${calls.runs} stage runs; ${report.seconds} s in all`,
      );
    }
    console.log(JSON.stringify(report));
    return 0;
  } finally {
    await runtime.close();
  }
}
