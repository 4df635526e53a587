import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { InvalidInputError, LightmemError } from '../core/errors.js';
import { OnnxEmbedder } from '../adapters/onnx/onnx-embedder.js';
import { DatasetFormatValues, isDatasetFormat, type DatasetFormat } from '../ingest/index.js';
import { checkModelDir, resolveModelsDir } from '../models/model-fetcher.js';
import { modelFileName } from '../models/model-manifest.js';
import { loadConfig } from '../runtime/load-config.js';
import { describePeak, machineCpuPeak, peakOnCores } from '../bench/cpu-peak.js';
import {
  builtinTexts,
  countModelFlops,
  datasetTexts,
  flopsFormula,
  parseBatchSizes,
  runEmbedBench,
} from '../bench/embed-bench.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { ProgressBar } from './progress.js';

export const embedBenchUsage = `lightmem bench embed [--data <file> --format locomo|longmemeval|jsonl] [--texts 512] [--batch-sizes 1,8,32,128]
    [--threads 2] [--passes 1] [--model NAME|PATH] [--models-dir D] [--json]
  Embedder throughput: texts/s and tokens/s (real and padded) per batch size (texts per session run) over
  the first --texts turns of the file (built-in sample turns without --data), the model's FLOPs per token
  from its ONNX graph, and the fraction of the CPU's fp32 peak reached. With --json the last line is one
  JSON object.`;

const defaultBatchSizes = [1, 8, 32, 128];

export async function embedBench(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    data: { type: 'string' },
    format: { type: 'string' },
    texts: { type: 'string' },
    'batch-sizes': { type: 'string' },
    threads: { type: 'string' },
    passes: { type: 'string' },
    model: { type: 'string' },
    'models-dir': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(embedBenchUsage);
    return 0;
  }
  const json = values['json'] === true;
  const data = stringOption(values, 'data');
  const format = stringOption(values, 'format') ?? (data?.endsWith('.jsonl') === true ? 'jsonl' : undefined);
  let dataset: { path: string; format: DatasetFormat } | null = null;
  if (data !== undefined) {
    if (format === undefined || !isDatasetFormat(format))
      throw new InvalidInputError(`--format must be one of ${DatasetFormatValues.join(', ')}`, 'format');
    dataset = { path: data, format };
  }
  const count = intOption(values, 'texts', 512);
  if (count < 1) throw new InvalidInputError(`--texts must be at least 1 (got ${count})`, 'texts');
  const batchSizes = parseBatchSizes(stringOption(values, 'batch-sizes') ?? defaultBatchSizes.join(','));
  if (batchSizes === null)
    throw new InvalidInputError('--batch-sizes takes positive integers separated by commas', 'batch-sizes');
  const passes = intOption(values, 'passes', 1);
  if (passes < 1) throw new InvalidInputError(`--passes must be at least 1 (got ${passes})`, 'passes');

  const dataDir = stringOption(values, 'data-dir');
  const config = loadConfig({
    env: process.env,
    file: stringOption(values, 'config'),
    overrides: dataDir === undefined ? {} : { dataDir },
  });
  const threads = intOption(values, 'threads', config.models.threads ?? Math.min(2, availableParallelism()));
  if (threads < 1) throw new InvalidInputError(`--threads must be at least 1 (got ${threads})`, 'threads');
  const modelsDirFlag = stringOption(values, 'models-dir');
  const modelsDir =
    modelsDirFlag === undefined
      ? (config.models.dir ?? join(config.dataDir, 'models'))
      : resolveModelsDir({ dataDir: config.dataDir, flag: modelsDirFlag });
  const name = stringOption(values, 'model') ?? config.models.embedder;
  const fetchHint =
    'run `lightmem models fetch` (bge-small-en-v1.5-q) or `lightmem models fetch --model NAME`';
  if (name === 'none')
    throw new LightmemError(
      'config_invalid',
      `bench embed needs an embedder, and models.embedder is none: set LIGHTMEM_EMBEDDER or pass --model NAME; ${fetchHint} to install one`,
      { field: 'models.embedder' },
    );
  const folder = isAbsolute(name) || name.startsWith('.') ? resolve(name) : join(modelsDir, name);
  const installed = await checkModelDir(folder);
  if (!installed.ok)
    throw new LightmemError(
      'not_found',
      `embedder ${name} is not installed in ${folder} (${installed.problem}): ${fetchHint} first (or --source maven)`,
      { field: 'models.embedder' },
    );

  const texts =
    dataset === null ? builtinTexts(count) : await datasetTexts(dataset.path, dataset.format, count);
  if (texts.length === 0) throw new InvalidInputError(`no turn texts in ${data ?? 'the corpus'}`, 'data');
  const flops = countModelFlops(await readFile(join(folder, modelFileName)), installed.manifest.dims);
  const machine = machineCpuPeak();
  const cores = Math.min(threads, machine.cores);
  const peak = peakOnCores(machine, cores);
  // An int8-quantized model's weight products (all but ~2% of its FLOPs) run on the integer units: its
  // fraction of peak is of the int8 peak; an fp32 model's of the fp32 peak.
  const peakBasis = flops.int8Matmuls > 0 && peak.int8 !== null ? 'int8' : 'fp32';
  const progress = new ProgressBar('embedding', process.stderr, json);
  const started = performance.now();
  const result = await runEmbedBench({
    texts,
    batchSizes,
    passes,
    flops,
    peakFlops: peakBasis === 'int8' && peak.int8 !== null ? peak.int8.peakOps : peak.fp32PeakFlops,
    open: (batchSize) => OnnxEmbedder.load(folder, { threads, batchSize }),
    onProgress: (done, total) => progress.update(done, total, 'passes'),
  });
  progress.finish();
  const quantized = flops.int8Matmuls > 0;
  const report = {
    benchmark: 'embed',
    data: data ?? null,
    corpus: data === undefined ? 'built-in sample turns (cycled)' : `first ${texts.length} turn texts`,
    embedder: result.embedder,
    threads,
    passes,
    seconds: Math.round((performance.now() - started) / 100) / 10,
    texts: result.texts,
    tokens: result.tokens,
    meanTokensPerText: result.meanTokensPerText,
    maxTokensPerText: result.maxTokensPerText,
    model: {
      parameters: flops.parameters,
      matmulParameters: flops.matmulParameters,
      matmuls: flops.matmuls,
      int8Matmuls: flops.int8Matmuls,
      attentionLayers: flops.attentionLayers,
      hidden: flops.hidden,
      flopsPerToken: result.flopsPerToken,
      formula: flopsFormula,
    },
    peak: {
      basis: peakBasis,
      cores,
      machineCores: machine.cores,
      cpu: machine.model,
      mhz: machine.mhz,
      simd: machine.simd,
      fp32FlopsPerCycle: machine.fp32FlopsPerCycle,
      fp32PeakGflops: Math.round(peak.fp32PeakFlops / 1e7) / 100,
      int8PeakGops: peak.int8 === null ? null : Math.round(peak.int8.peakOps / 1e7) / 100,
      int8: peak.int8?.level ?? null,
      note: quantized
        ? peakBasis === 'int8'
          ? `the model is int8-quantized: its weight products run on the integer units, so the fraction is of the int8 peak (${peak.int8?.level})`
          : 'the model is int8-quantized but the CPU announces no int8 multiply-add: the fraction is of the fp32 peak'
        : null,
    },
    results: result.results,
  };
  if (!json) {
    const mega = (n: number): string => (n / 1e6).toFixed(1);
    const f = result.flopsPerToken;
    console.log(
      `embedder ${result.embedder} on ${threads} thread(s), ${result.texts} texts (${report.corpus}), ` +
        `${result.meanTokensPerText} tokens/text on average (max ${result.maxTokensPerText}), ${passes} timed pass(es) per batch size`,
    );
    console.log(
      `model: ${mega(flops.parameters)}M parameters, ${mega(flops.matmulParameters)}M in ${flops.matmuls} weight products` +
        `${quantized ? ` (${flops.int8Matmuls} int8)` : ''}, ${flops.attentionLayers} attention layers, hidden ${flops.hidden}`,
    );
    if (f !== null)
      console.log(
        `FLOPs/token: ${mega(f.weights)} M weights + ${mega(f.attentionAtMeanLength)} M attention at L=${result.meanTokensPerText} = ${mega(f.totalAtMeanLength)} M\n  ${flopsFormula}`,
      );
    console.log(
      `peak: ${describePeak(peak)}${cores < machine.cores ? ` (${cores} of ${machine.cores} cores)` : ''}`,
    );
    if (report.peak.note !== null) console.log(`  ${report.peak.note}`);
    console.log('batch   texts/s   tokens/s  padded tok/s  padding  ms/batch  GFLOP/s  % of peak');
    for (const r of result.results) {
      console.log(
        `${String(r.batchSize).padStart(5)} ${r.textsPerSecond.toFixed(1).padStart(9)} ${r.tokensPerSecond.toFixed(0).padStart(10)} ${r.paddedTokensPerSecond.toFixed(0).padStart(13)} ${`${(r.paddingFraction * 100).toFixed(1)}%`.padStart(8)} ${r.msPerBatch.toFixed(1).padStart(9)} ${(r.gflopsPerSecond ?? 0).toFixed(1).padStart(8)} ${`${((r.fractionOfPeak ?? 0) * 100).toFixed(1)}%`.padStart(10)}`,
      );
    }
  }
  console.log(JSON.stringify(report));
  return 0;
}
