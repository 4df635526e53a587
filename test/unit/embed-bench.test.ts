import assert from 'node:assert/strict';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import onnxProto from 'onnx-proto';
import { OnnxEmbedder } from '../../services/adapters/onnx/onnx-embedder.js';
import {
  attentionFlopsPerToken,
  builtinTexts,
  countModelFlops,
  flopsPerToken,
  parseBatchSizes,
  runEmbedBench,
  sequenceFlops,
  type ModelFlops,
} from '../../services/bench/embed-bench.js';
import { cpuPeakFromCpuinfo, describePeak, peakOnCores } from '../../services/bench/cpu-peak.js';
import { tinyEmbedderModel, writeTinyEmbedderFolder } from '../support/tiny-onnx.js';
import { tempDir } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';

const { onnx } = onnxProto;
const { FLOAT, INT8 } = onnx.TensorProto.DataType;

const folders: string[] = [];
after(async () => {
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

async function tinyFolder(): Promise<string> {
  const folder = await writeTinyEmbedderFolder();
  folders.push(folder);
  return folder;
}

/**
 * A one-layer toy encoder over x [batch, seq, 4]: MatMul by W1 [4, 4]; MatMul by Transpose(W2 [8, 4]);
 * DynamicQuantizeLinear + MatMulInteger by int8 W3 [8, 4]; one attention (x·xᵀ, Softmax) between
 * activations. Only decoded, never run.
 */
function toyEncoder(): Uint8Array {
  const weight = (name: string, dims: number[], dataType = FLOAT) => ({
    name,
    dims,
    dataType,
    ...(dataType === FLOAT
      ? { floatData: new Array<number>(dims.reduce((a, b) => a * b, 1)).fill(0.5) }
      : { int32Data: new Array<number>(dims.reduce((a, b) => a * b, 1)).fill(1) }),
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'toy-encoder',
      initializer: [
        weight('W1', [4, 4]),
        weight('W2', [8, 4]),
        weight('W3', [8, 4], INT8),
        weight('W3_zp', [4], INT8),
      ],
      node: [
        { opType: 'MatMul', input: ['x', 'W1'], output: ['h1'] },
        { opType: 'Transpose', input: ['h1'], output: ['h1T'] },
        { opType: 'MatMul', input: ['h1', 'h1T'], output: ['scores'] },
        { opType: 'Softmax', input: ['scores'], output: ['probs'] },
        { opType: 'MatMul', input: ['probs', 'h1'], output: ['context'] },
        { opType: 'Transpose', input: ['W2'], output: ['W2T'] },
        { opType: 'MatMul', input: ['context', 'W2T'], output: ['h2'] },
        { opType: 'DynamicQuantizeLinear', input: ['h2'], output: ['h2q', 'h2s', 'h2zp'] },
        { opType: 'MatMulInteger', input: ['h2q', 'W3', 'h2zp', 'W3_zp'], output: ['h3'] },
      ],
      input: [
        {
          name: 'x',
          type: {
            tensorType: {
              elemType: FLOAT,
              shape: { dim: [{ dimParam: 'batch' }, { dimParam: 'seq' }, { dimValue: 4 }] },
            },
          },
        },
      ],
      output: [{ name: 'h3', type: { tensorType: { elemType: onnx.TensorProto.DataType.INT32 } } }],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

describe('FLOPs from an ONNX graph', () => {
  it('counts 2·in·out per weight product (through Transpose, int8 MatMulInteger) and one attention layer', () => {
    const flops = countModelFlops(toyEncoder());
    assert.deepEqual(flops, {
      weightFlopsPerToken: 2 * 16 + 2 * 32 + 2 * 32,
      matmuls: 3,
      int8Matmuls: 1,
      matmulParameters: 80,
      parameters: 16 + 32 + 32 + 4,
      attentionLayers: 1,
      hidden: 4,
    });
    // QKᵀ and A·V: 2·L·hidden each per layer per token.
    assert.equal(attentionFlopsPerToken(flops, 10), 4 * 10 * 4);
    assert.equal(flopsPerToken(flops, 10), 160 + 160);
    assert.equal(sequenceFlops(flops, 10), 10 * 320);
  });

  it('a lookup-only model has no weight products; the hidden width falls back to the one given', () => {
    const flops = countModelFlops(tinyEmbedderModel(), 3);
    assert.equal(flops.weightFlopsPerToken, 0);
    assert.equal(flops.matmuls, 0);
    assert.equal(flops.attentionLayers, 0);
    assert.equal(flops.hidden, 3);
    assert.ok(flops.parameters > 0);
  });
});

const cpuinfo = (flags: string, processors: number, mhz: string | null, model = 'Test CPU') =>
  Array.from(
    { length: processors },
    (_, i) =>
      `processor\t: ${i}\nmodel name\t: ${model}\n${mhz === null ? '' : `cpu MHz\t\t: ${mhz}\n`}flags\t\t: ${flags}\n`,
  ).join('\n');

describe('CPU peak from /proc/cpuinfo', () => {
  it('AVX-512 with VNNI: 64 fp32 FLOP/cycle, 256 int8 ops/cycle', () => {
    const peak = cpuPeakFromCpuinfo(
      cpuinfo('fpu sse sse2 avx fma avx2 avx512f avx512bw avx512_vnni', 4, '2000.000'),
    );
    assert.equal(peak.simd, 'avx512f');
    assert.equal(peak.cores, 4);
    assert.equal(peak.mhz, 2000);
    assert.equal(peak.fp32FlopsPerCycle, 64);
    assert.equal(peak.fp32PeakFlops, 4 * 2e9 * 64);
    assert.deepEqual(peak.int8, { level: 'avx512_vnni', opsPerCycle: 256, peakOps: 4 * 2e9 * 256 });
    assert.match(describePeak(peak), /fp32 peak 512\.0 GFLOP\/s = 4 cores × 2\.00 GHz × 64 FLOP\/cycle/);
  });

  it('AVX2 + FMA: 32 FLOP/cycle and 64 int8 ops/cycle (two instructions per product); avx_vnni doubles it', () => {
    const peak = cpuPeakFromCpuinfo(cpuinfo('fpu sse sse2 avx fma avx2', 2, '2445.430', 'AMD EPYC'));
    assert.equal(peak.simd, 'avx2+fma');
    assert.equal(peak.model, 'AMD EPYC');
    assert.equal(peak.fp32FlopsPerCycle, 32);
    assert.ok(Math.abs(peak.fp32PeakFlops - 2 * 2445.43e6 * 32) < 1);
    assert.equal(peak.int8?.level, 'avx2');
    assert.equal(peak.int8?.opsPerCycle, 64);
    assert.ok(Math.abs((peak.int8?.peakOps ?? 0) - 2 * 2445.43e6 * 64) < 1);
    assert.equal(cpuPeakFromCpuinfo(cpuinfo('sse sse2 avx', 2, '3000')).int8, null);
    const vnni = cpuPeakFromCpuinfo(cpuinfo('sse avx fma avx2 avx_vnni', 2, '3000'));
    assert.deepEqual(vnni.int8, { level: 'avx_vnni', opsPerCycle: 128, peakOps: 2 * 3e9 * 128 });
    assert.equal(peakOnCores(vnni, 1).fp32PeakFlops, 3e9 * 32);
    assert.equal(peakOnCores(vnni, 1).int8?.peakOps, 3e9 * 128);
  });

  it('no AVX: SSE, 8 FLOP/cycle; the clock from the model name or the fallback; cores from the fallback', () => {
    const sse = cpuPeakFromCpuinfo(cpuinfo('fpu sse sse2', 1, null, 'Old CPU @ 2.50GHz'));
    assert.equal(sse.simd, 'sse');
    assert.equal(sse.fp32FlopsPerCycle, 8);
    assert.equal(sse.mhz, 2500);
    const bare = cpuPeakFromCpuinfo('', { cores: 3, mhz: 1000 });
    assert.equal(bare.simd, 'scalar');
    assert.equal(bare.cores, 3);
    assert.equal(bare.fp32PeakFlops, 3 * 1e9 * 2);
  });
});

describe('the embed benchmark loop', () => {
  const texts = [
    'i went to the park',
    'a dog',
    'the cats playing .',
    'i went to the park to play with a dog and a cat .',
    'cat',
  ];
  const corpus = Array.from({ length: 20 }, (_, i) => texts[i % texts.length] ?? '');

  it('OnnxEmbedder says how many tokens each text has and which batches embed runs', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder(), { threads: 1, batchSize: 2 });
    try {
      assert.deepEqual(embedder.tokenCounts(['a dog', 'cat']), [4, 3]);
      assert.deepEqual(embedder.tokenCounts(['a dog']), [embedder.tokenize('a dog').length]);
      // Sorted by length, then cut into runs of 2: [3, 4] then [7].
      assert.deepEqual(embedder.batchShapes(['i went to the park', 'a dog', 'cat']), [
        { rows: 2, seq: 4 },
        { rows: 1, seq: 7 },
      ]);
    } finally {
      await embedder.close();
    }
  });

  it('one entry per batch size, each over every text, with the session run at that batch size', async () => {
    const folder = await tinyFolder();
    const flops: ModelFlops = {
      weightFlopsPerToken: 1e6,
      matmuls: 1,
      int8Matmuls: 0,
      matmulParameters: 5e5,
      parameters: 6e5,
      attentionLayers: 2,
      hidden: 8,
    };
    const counter = await OnnxEmbedder.load(folder, { threads: 1 });
    const lengths = counter.tokenCounts(corpus);
    await counter.close();
    const longest = Math.max(...lengths);
    // A clock that advances 1 s per reading: every timed pass takes exactly 1 s.
    let clock = 0;
    const progress: number[] = [];
    const result = await runEmbedBench({
      texts: corpus,
      batchSizes: [1, 4, 32],
      passes: 2,
      flops,
      peakFlops: 1e9,
      now: () => (clock += 1000),
      open: (batchSize) => OnnxEmbedder.load(folder, { threads: 1, batchSize }),
      onProgress: (done) => progress.push(done),
    });
    assert.deepEqual(progress, [1, 2, 3, 4, 5, 6]);
    assert.match(result.embedder, /^tiny-embedder@/);
    assert.equal(result.texts, 20);
    assert.ok(result.tokens > 20 * 2, 'special tokens and words are counted');
    assert.equal(result.meanTokensPerText, Math.round((result.tokens / 20) * 100) / 100);
    assert.equal(
      result.tokens,
      lengths.reduce((a, b) => a + b, 0),
    );
    assert.equal(result.maxTokensPerText, longest);
    assert.deepEqual(
      result.results.map((r) => [r.batchSize, r.sessionRuns, r.passes, r.seconds]),
      [
        [1, 20, 2, 2],
        [4, 5, 2, 2],
        [32, 1, 2, 2],
      ],
    );
    for (const r of result.results) {
      assert.equal(r.textsPerSecond, 20);
      assert.equal(r.tokensPerSecond, result.tokens);
      assert.ok(r.paddedTokensPerSecond >= r.tokensPerSecond);
      assert.equal(r.msPerBatch, Math.round((2000 / (r.sessionRuns * 2)) * 1000) / 1000);
      assert.ok(r.gflopsPerSecond !== null && r.gflopsPerSecond > 0);
      // Peak 1 GFLOP/s: the fraction is the GFLOP/s (before rounding).
      assert.ok(Math.abs((r.fractionOfPeak ?? 0) - (r.gflopsPerSecond ?? 0)) < 0.01);
    }
    // Batch size 1 pads nothing; one batch of all texts pads every text to the longest.
    assert.equal(result.results[0]?.paddingFraction, 0);
    assert.equal(result.results[2]?.paddedTokensPerSecond, 20 * longest);
    const useful = lengths.reduce((sum, n) => sum + sequenceFlops(flops, n), 0);
    assert.equal(result.results[0]?.gflopsPerSecond, Math.round((useful / 1e9) * 100) / 100);
    assert.ok(result.flopsPerToken !== null);
    assert.equal(result.flopsPerToken.weights, 1e6);
    assert.equal(result.flopsPerToken.totalAtMeanLength, Math.round(1e6 + 4 * (result.tokens / 20) * 8 * 2));
  });

  it('the built-in corpus and --batch-sizes parsing', () => {
    assert.equal(builtinTexts(40).length, 40);
    assert.ok(builtinTexts(40).every((text) => text.length > 0));
    assert.deepEqual(parseBatchSizes('1, 8,32,128'), [1, 8, 32, 128]);
    assert.equal(parseBatchSizes('1,0'), null);
    assert.equal(parseBatchSizes('eight'), null);
  });
});

describe('lightmem bench embed', () => {
  const dir = tempDir('bench-embed');
  after(() => dir.remove());

  it('--json: the last line is one JSON object with a row per batch size', async () => {
    const modelsDir = join(dir.path, 'models');
    await mkdir(modelsDir, { recursive: true });
    await rename(await writeTinyEmbedderFolder(), join(modelsDir, 'tiny'));
    const result = await runCliInProcess(
      [
        'bench',
        'embed',
        '--texts',
        '12',
        '--batch-sizes',
        '1,4',
        '--threads',
        '1',
        '--json',
        '--data-dir',
        dir.path,
      ],
      { LIGHTMEM_MODELS_DIR: modelsDir, LIGHTMEM_EMBEDDER: 'tiny' },
    );
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as {
      benchmark: string;
      texts: number;
      threads: number;
      results: { batchSize: number; textsPerSecond: number; tokensPerSecond: number }[];
      model: { formula: string };
      peak: { basis: string; fp32PeakGflops: number; cores: number };
    };
    assert.equal(report.benchmark, 'embed');
    assert.equal(report.texts, 12);
    assert.equal(report.threads, 1);
    assert.deepEqual(
      report.results.map((r) => r.batchSize),
      [1, 4],
    );
    assert.ok(report.results.every((r) => r.textsPerSecond > 0 && r.tokensPerSecond > 0));
    assert.match(report.model.formula, /2·Σ\(in·out\)/);
    assert.equal(report.peak.basis, 'fp32');
    assert.equal(report.peak.cores, 1);
    assert.ok(report.peak.fp32PeakGflops > 0);
  });

  it('without an installed embedder: fails and says how to fetch one', async () => {
    const missing = await runCliInProcess(['bench', 'embed', '--texts', '4', '--data-dir', dir.path], {
      LIGHTMEM_MODELS_DIR: join(dir.path, 'empty'),
      LIGHTMEM_EMBEDDER: 'bge-small-en-v1.5-q',
    });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /embedder bge-small-en-v1\.5-q is not installed .*lightmem models fetch/);
    const none = await runCliInProcess(['bench', 'embed', '--data-dir', dir.path]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /needs an embedder.*lightmem models fetch/);
  });
});
