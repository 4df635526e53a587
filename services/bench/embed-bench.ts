import onnxProto from 'onnx-proto';
import { loadDataset, type DatasetFormat } from '../ingest/index.js';

const { onnx } = onnxProto;

// ---------------------------------------------------------------------------------------------------------
// FLOPs of an encoder, from its ONNX graph

/**
 * Multiply-add work of a transformer encoder per token, read from its ONNX graph. Every matrix product
 * with a constant weight W [in, out] (MatMul, Gemm, and the quantized MatMulInteger / DynamicQuantizeMatMul
 * / MatMulIntegerToFloat / QLinearMatMul / QGemm, and the weights of fused Attention ops) costs 2·in·out
 * FLOPs per token, whatever the precision. Attention itself (QKᵀ and A·V, products of two activations)
 * costs 2·L·hidden each per layer per token at sequence length L, so 4·L·hidden·layers per token; layers
 * are the Softmax nodes (plus fused Attention ops). Element-wise work (layer norms, GELU, softmax) and the
 * embedding lookup are left out: a few percent at most.
 */
export interface ModelFlops {
  /** 2·Σ in·out over the weight products. */
  readonly weightFlopsPerToken: number;
  /** Weight products counted, and how many of them are integer (quantized). */
  readonly matmuls: number;
  readonly int8Matmuls: number;
  /** Σ in·out: the parameters in weight products (BERT's non-embedding parameters, biases aside). */
  readonly matmulParameters: number;
  /** All initializer elements (embeddings, zero points and scales included). */
  readonly parameters: number;
  readonly attentionLayers: number;
  /** Width of the attention (the most common input width of the weight products). */
  readonly hidden: number;
}

export const flopsFormula =
  'FLOPs/token = 2·Σ(in·out) over weight MatMul/Gemm/MatMulInteger + 4·L·hidden·layers (QKᵀ and A·V at sequence length L)';

/** Inputs that carry the weight of each product op (`null`: any 2-D constant input). */
const weightInputs: Readonly<Record<string, readonly number[] | null>> = {
  MatMul: null,
  FusedMatMul: null,
  Gemm: null,
  MatMulInteger: [1, 0],
  MatMulIntegerToFloat: [1, 0],
  DynamicQuantizeMatMul: [1],
  QLinearMatMul: [3, 0],
  QGemm: [3, 0],
  Attention: [1],
  QAttention: [1],
};
const integerOps = new Set([
  'MatMulInteger',
  'MatMulIntegerToFloat',
  'DynamicQuantizeMatMul',
  'QLinearMatMul',
  'QGemm',
  'QAttention',
]);
/** Ops a constant weight may pass through on its way to a product (dequantized, transposed, cast). */
const passThrough = new Set(['DequantizeLinear', 'Transpose', 'Cast', 'Identity']);

type NodeProto = onnxProto.onnx.INodeProto;

/** Counts the FLOPs of an ONNX encoder (see `ModelFlops`). `fallbackHidden` when no product has a weight. */
export function countModelFlops(modelBytes: Uint8Array, fallbackHidden = 0): ModelFlops {
  const graph = onnx.ModelProto.decode(modelBytes).graph;
  const constants = new Map<string, number[]>();
  let parameters = 0;
  for (const tensor of graph?.initializer ?? []) {
    const dims = (tensor.dims ?? []).map(Number);
    constants.set(tensor.name ?? '', dims);
    parameters += dims.reduce((a, b) => a * b, 1);
  }
  const producers = new Map<string, NodeProto>();
  for (const node of graph?.node ?? []) {
    for (const output of node.output ?? []) producers.set(output, node);
    if (node.opType === 'Constant') {
      const value = node.attribute?.find((a) => a.name === 'value')?.t;
      const name = node.output?.[0];
      if (value !== undefined && value !== null && name !== undefined)
        constants.set(name, (value.dims ?? []).map(Number));
    }
  }
  /** The shape of a constant feeding `name`, through dequantize / transpose / cast; null if it is computed. */
  const constantShape = (name: string, depth = 0): number[] | null => {
    const direct = constants.get(name);
    if (direct !== undefined) return direct;
    const producer = producers.get(name);
    if (depth > 4 || producer === undefined || !passThrough.has(producer.opType ?? '')) return null;
    const source = producer.input?.[0];
    return source === undefined ? null : constantShape(source, depth + 1);
  };

  let weightFlops = 0;
  let matmuls = 0;
  let int8Matmuls = 0;
  let matmulParameters = 0;
  let softmaxes = 0;
  let fusedAttention = 0;
  const widths = new Map<number, number>();
  for (const node of graph?.node ?? []) {
    const op = node.opType ?? '';
    if (op === 'Softmax') softmaxes++;
    if (op === 'Attention' || op === 'QAttention') fusedAttention++;
    let shape: number[] | null = null;
    if (op === 'MatMulNBits') {
      const attr = (name: string) => Number(node.attribute?.find((a) => a.name === name)?.i ?? 0);
      shape = [attr('K'), attr('N')];
    } else if (op in weightInputs) {
      const inputs = node.input ?? [];
      const candidates = weightInputs[op] ?? inputs.map((_, index) => index);
      for (const index of candidates) {
        const name = inputs[index];
        const found = name === undefined || name === '' ? null : constantShape(name);
        if (found !== null && found.length === 2) {
          shape = found;
          break;
        }
      }
    }
    if (shape === null) continue;
    const [rows = 0, cols = 0] = shape;
    if (rows <= 0 || cols <= 0) continue;
    matmuls++;
    if (integerOps.has(op) || op === 'MatMulNBits') int8Matmuls++;
    matmulParameters += rows * cols;
    weightFlops += 2 * rows * cols;
    // The model width is the smaller side of every weight: square projections, [h, 4h] and [4h, h] FFNs,
    // [h, 3h] fused QKV (whichever way round a Gemm stores them).
    const width = Math.min(rows, cols);
    widths.set(width, (widths.get(width) ?? 0) + 1);
  }
  let hidden = fallbackHidden;
  let best = 0;
  for (const [width, count] of widths)
    if (count > best) {
      best = count;
      hidden = width;
    }
  return {
    weightFlopsPerToken: weightFlops,
    matmuls,
    int8Matmuls,
    matmulParameters,
    parameters,
    attentionLayers: softmaxes + fusedAttention,
    hidden,
  };
}

/** Attention FLOPs per token at sequence length `seq`: QKᵀ and A·V, 2·seq·hidden each, per layer. */
export function attentionFlopsPerToken(flops: ModelFlops, seq: number): number {
  return 4 * seq * flops.hidden * flops.attentionLayers;
}

/** FLOPs per token at sequence length `seq`: weights plus attention. */
export function flopsPerToken(flops: ModelFlops, seq: number): number {
  return flops.weightFlopsPerToken + attentionFlopsPerToken(flops, seq);
}

/** FLOPs of one sequence of `tokens` tokens: each token at that length. */
export function sequenceFlops(flops: ModelFlops, tokens: number): number {
  return tokens * flopsPerToken(flops, tokens);
}

// ---------------------------------------------------------------------------------------------------------
// The corpus

/** The turn texts of a dataset file, in file order, at most `limit`. */
export async function datasetTexts(path: string, format: DatasetFormat, limit: number): Promise<string[]> {
  const texts: string[] = [];
  if (limit <= 0) return texts;
  for await (const item of loadDataset(path, format, {})) {
    if (!item.result.ok || item.result.event.kind !== 'turn') continue;
    const text = item.result.event.text.trim();
    if (text === '') continue;
    texts.push(text);
    if (texts.length >= limit) break;
  }
  return texts;
}

/** Conversation turns of varied length for runs without a data file (cycled to the wanted count). */
const builtinTurns = [
  'Hey! How was your weekend?',
  'Pretty good, thanks. I finally went hiking up at the lake with my sister.',
  'Oh nice, I have been meaning to go there. Was the trail crowded?',
  'Not really, we left early in the morning, around six, so we had most of it to ourselves.',
  'I adopted a corgi last month, his name is Waffles and he already chewed through two pairs of shoes.',
  'That sounds like a handful. Are you taking him to puppy classes?',
  'Yes, every Tuesday evening at the community center near the library.',
  'By the way, did you ever hear back about the job in Seattle?',
  'I did! They offered me the position, but I would have to move by the end of March, which is a lot.',
  "Congratulations! That's huge. What are you going to do about the apartment lease?",
  'My landlord said I can break it with sixty days notice and a fee, so it is manageable.',
  'Ok.',
  'Remind me to call the vet on Friday about the vaccination appointment.',
  'I have been reading a book about the history of the Silk Road; the part about trade in Samarkand is fascinating, especially how paper making spread west.',
  'We should plan a dinner before you leave, maybe at that Thai place on 5th street?',
  'Sounds great, I am free next Saturday.',
] as const;

/** `count` texts from the built-in turns, cycled. */
export function builtinTexts(count: number): string[] {
  return Array.from({ length: Math.max(0, count) }, (_, i) => builtinTurns[i % builtinTurns.length] ?? '');
}

// ---------------------------------------------------------------------------------------------------------
// The benchmark loop

/** What the benchmark needs of an embedder (OnnxEmbedder has all of it). */
export interface BenchEmbedder {
  readonly id: string;
  readonly batchSize: number;
  embed(texts: readonly string[]): Promise<Float32Array[]>;
  /** Tokens per text, without padding. */
  tokenCounts(texts: readonly string[]): number[];
  /** [rows, seq] of each session run `embed(texts)` makes. */
  batchShapes(texts: readonly string[]): readonly { readonly rows: number; readonly seq: number }[];
  close?(): Promise<void>;
}

export interface EmbedBenchOptions {
  /** The corpus: every batch size embeds these texts. */
  readonly texts: readonly string[];
  readonly batchSizes: readonly number[];
  /** An embedder whose session runs `batchSize` texts at a time; closed after its batch size. */
  readonly open: (batchSize: number) => Promise<BenchEmbedder>;
  /** Timed passes over the texts per batch size (default 1), after one untimed warm-up batch. */
  readonly passes?: number;
  /** The model's FLOPs, for GFLOP/s; null: not reported. */
  readonly flops?: ModelFlops | null;
  /** Peak FLOP/s of the cores the embedder runs on, for the fraction of peak. */
  readonly peakFlops?: number | null;
  readonly now?: () => number;
  /** Called after each timed pass. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface BatchSizeFigures {
  readonly batchSize: number;
  readonly passes: number;
  /** Session runs per pass. */
  readonly sessionRuns: number;
  readonly seconds: number;
  readonly textsPerSecond: number;
  /** Real tokens (special tokens included, padding not). */
  readonly tokensPerSecond: number;
  /** Tokens the session computed, padding included. */
  readonly paddedTokensPerSecond: number;
  /** Share of the computed tokens that are padding. */
  readonly paddingFraction: number;
  readonly msPerBatch: number;
  /** FLOPs of the real tokens (each text at its own length) per second, in GFLOP/s; null without FLOPs. */
  readonly gflopsPerSecond: number | null;
  /** Same, counting what the session computed (padded batches). */
  readonly executedGflopsPerSecond: number | null;
  /** gflopsPerSecond over the peak; null without FLOPs or peak. */
  readonly fractionOfPeak: number | null;
}

export interface EmbedBenchResult {
  readonly embedder: string;
  readonly texts: number;
  readonly tokens: number;
  readonly meanTokensPerText: number;
  readonly maxTokensPerText: number;
  /** FLOPs per token at the mean text length, and its parts; null without FLOPs. */
  readonly flopsPerToken: {
    readonly weights: number;
    readonly attentionAtMeanLength: number;
    readonly totalAtMeanLength: number;
  } | null;
  readonly results: readonly BatchSizeFigures[];
}

const round = (value: number, digits = 1): number => {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
};

/**
 * For each batch size: opens an embedder with that batch size, embeds the `batchSize` longest texts once
 * (warm-up: sessions allocate their buffers on the first runs), then times `passes` passes of `embed` over
 * all texts (tokenization included). The embedder sorts the texts by length before batching, as in use.
 */
export async function runEmbedBench(options: EmbedBenchOptions): Promise<EmbedBenchResult> {
  const { texts, batchSizes, flops = null, peakFlops = null } = options;
  const passes = options.passes ?? 1;
  const now = options.now ?? (() => performance.now());
  if (texts.length === 0) throw new Error('no texts to embed');
  let embedderId = '';
  let lengths: number[] = [];
  const results: BatchSizeFigures[] = [];
  let done = 0;
  for (const batchSize of batchSizes) {
    const embedder = await options.open(batchSize);
    try {
      embedderId = embedder.id;
      if (embedder.batchSize !== batchSize)
        throw new Error(`the embedder runs batches of ${embedder.batchSize}, not ${batchSize}`);
      lengths = embedder.tokenCounts(texts);
      const shapes = embedder.batchShapes(texts);
      const longest = texts
        .map((text, index) => ({ text, length: lengths[index] ?? 0 }))
        .sort((a, b) => b.length - a.length)
        .slice(0, batchSize)
        .map((entry) => entry.text);
      await embedder.embed(longest);

      let elapsed = 0;
      for (let pass = 0; pass < passes; pass++) {
        const started = now();
        const vectors = await embedder.embed(texts);
        elapsed += now() - started;
        if (vectors.length !== texts.length)
          throw new Error(`embed returned ${vectors.length} vectors for ${texts.length} texts`);
        options.onProgress?.(++done, batchSizes.length * passes);
      }
      const seconds = Math.max(elapsed, 1e-6) / 1000;
      const tokens = lengths.reduce((a, b) => a + b, 0);
      const padded = shapes.reduce((sum, shape) => sum + shape.rows * shape.seq, 0);
      const useful = flops === null ? null : lengths.reduce((sum, n) => sum + sequenceFlops(flops, n), 0);
      const executed =
        flops === null
          ? null
          : shapes.reduce((sum, shape) => sum + shape.rows * sequenceFlops(flops, shape.seq), 0);
      const gflops = useful === null ? null : (useful * passes) / seconds / 1e9;
      results.push({
        batchSize,
        passes,
        sessionRuns: shapes.length,
        seconds: round(seconds, 3),
        textsPerSecond: round((texts.length * passes) / seconds),
        tokensPerSecond: round((tokens * passes) / seconds),
        paddedTokensPerSecond: round((padded * passes) / seconds),
        paddingFraction: padded === 0 ? 0 : round(1 - tokens / padded, 4),
        msPerBatch: round(elapsed / (shapes.length * passes), 3),
        gflopsPerSecond: gflops === null ? null : round(gflops, 2),
        executedGflopsPerSecond: executed === null ? null : round((executed * passes) / seconds / 1e9, 2),
        fractionOfPeak:
          gflops === null || peakFlops === null || peakFlops <= 0
            ? null
            : round((gflops * 1e9) / peakFlops, 4),
      });
    } finally {
      await embedder.close?.();
    }
  }
  const tokens = lengths.reduce((a, b) => a + b, 0);
  const mean = tokens / texts.length;
  return {
    embedder: embedderId,
    texts: texts.length,
    tokens,
    meanTokensPerText: round(mean, 2),
    maxTokensPerText: Math.max(0, ...lengths),
    flopsPerToken:
      flops === null
        ? null
        : {
            weights: flops.weightFlopsPerToken,
            attentionAtMeanLength: Math.round(attentionFlopsPerToken(flops, mean)),
            totalAtMeanLength: Math.round(flopsPerToken(flops, mean)),
          },
    results,
  };
}

/** Parses `--batch-sizes 1,8,32,128`. */
export function parseBatchSizes(value: string): number[] | null {
  const sizes = value.split(',').map((part) => Number(part.trim()));
  return sizes.length > 0 && sizes.every((n) => Number.isSafeInteger(n) && n >= 1) ? sizes : null;
}
