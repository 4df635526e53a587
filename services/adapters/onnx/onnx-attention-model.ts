import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { LightmemError } from '../../core/errors.js';
import type { AttentionModel, SentenceAttention } from '../../core/ports/segmenter.js';
import type { HfTokenizer } from './hf-tokenizer.js';
import { createSession, derivedOf, positiveInteger, readModelFolder, readRequired } from './model-folder.js';

export interface OnnxAttentionOptions {
  /** How many of the last encoder layers to average (LightMem: layers 8–11 of 12, i.e. the last 4). */
  readonly lastLayers?: number;
  readonly threads?: number;
}

const softmaxName = /layer\.(\d+)\/attention\/self\/Softmax$/;

/** A self-attention layer's Softmax: its layer number and the name of its output. */
interface SoftmaxLayer {
  readonly layer: number;
  readonly output: string;
}

/**
 * The attention half of topic segmentation on the installed encoder: the ONNX graph is rewritten so that
 * the attention probabilities (the Softmax of each self-attention layer) are extra graph outputs, and one
 * sequence `[CLS] s1 s2 … [SEP]` is run through it. No separate export is needed.
 *
 * Loading only finds the layers (cached with the model file's hash, so a start-up does not parse the
 * graph again): the graph is rewritten and its session created on the first `attention` call, so a
 * process that never segments (`lightmem search`) never pays for it.
 */
export class OnnxAttentionModel implements AttentionModel {
  private session: Promise<ort.InferenceSession> | null = null;

  private constructor(
    readonly id: string,
    private readonly openSession: () => Promise<ort.InferenceSession>,
    private readonly tokenizer: HfTokenizer,
    private readonly outputs: readonly string[],
    private readonly prefix: readonly number[],
    private readonly suffix: readonly number[],
    private readonly maxLength: number,
  ) {}

  static async load(folder: string, options: OnnxAttentionOptions = {}): Promise<OnnxAttentionModel> {
    const threads = positiveInteger(options.threads ?? availableParallelism(), 'threads');
    const { manifest, tokenizer, modelPath, modelSha256 } = await readModelFolder(folder, 'embedder');
    const layers = await derivedOf(modelPath, 'attentionSoftmaxLayers', async () =>
      softmaxLayersOf(await readRequired(modelPath)),
    );
    if (layers.length === 0) {
      throw new LightmemError(
        'config_invalid',
        `${modelPath}: no self-attention Softmax nodes to read attention from`,
      );
    }
    const chosen = layers.slice(-Math.max(1, options.lastLayers ?? 4));
    const outputs = chosen.map((entry) => entry.output);
    // The special tokens around a sequence, as the tokenizer's post-processor adds them.
    const probe = tokenizer.encode('hello', { add_special_tokens: false }).ids;
    const full = tokenizer.encode('hello').ids;
    const at = full.findIndex((_, i) => probe.every((id, k) => full[i + k] === id));
    const prefix = at < 0 ? [] : full.slice(0, at);
    const suffix = at < 0 ? [] : full.slice(at + probe.length);
    const sha = modelSha256.slice(0, 12);
    const id = `${manifest.name}@${sha}:attention(L${chosen.map((c) => c.layer).join(',')})`;
    const openSession = async (): Promise<ort.InferenceSession> =>
      createSession(
        await withOutputs(await readRequired(modelPath), outputs),
        modelPath,
        threads,
        'cannot expose attention outputs',
      );
    return new OnnxAttentionModel(id, openSession, tokenizer, outputs, prefix, suffix, manifest.maxLength);
  }

  async attention(sentences: readonly string[]): Promise<SentenceAttention> {
    const ids: number[] = [...this.prefix];
    const spans: { start: number; end: number }[] = [];
    const room = this.maxLength - this.suffix.length;
    for (const sentence of sentences) {
      const pieces = this.tokenizer.encode(sentence, { add_special_tokens: false }).ids;
      if (ids.length + pieces.length > room) break; // later sentences get no span
      spans.push({ start: ids.length, end: ids.length + pieces.length });
      ids.push(...pieces);
    }
    ids.push(...this.suffix);
    const length = ids.length;
    const tensor = (values: readonly number[]): ort.Tensor =>
      new ort.Tensor(
        'int64',
        BigInt64Array.from(values, (v) => BigInt(v)),
        [1, length],
      );
    const session = await this.ready();
    const feeds: Record<string, ort.Tensor> = {
      input_ids: tensor(ids),
      attention_mask: tensor(ids.map(() => 1)),
    };
    if (session.inputNames.includes('token_type_ids')) feeds['token_type_ids'] = tensor(ids.map(() => 0));
    const result = await session.run(feeds, [...this.outputs]);
    const matrix = Array.from({ length }, () => new Array<number>(length).fill(0));
    let maps = 0;
    for (const name of this.outputs) {
      const output = result[name];
      if (output === undefined) continue;
      const data = output.data as Float32Array;
      const heads = data.length / (length * length);
      for (let h = 0; h < heads; h++) {
        const offset = h * length * length;
        for (let q = 0; q < length; q++) {
          const row = matrix[q];
          if (row === undefined) continue;
          for (let k = 0; k < length; k++) row[k] = (row[k] ?? 0) + (data[offset + q * length + k] ?? 0);
        }
      }
      maps += heads;
    }
    if (maps > 0)
      for (const row of matrix) for (let k = 0; k < row.length; k++) row[k] = (row[k] ?? 0) / maps;
    return { matrix, spans };
  }

  async close(): Promise<void> {
    const session = this.session;
    this.session = null;
    if (session !== null) await (await session.catch(() => null))?.release();
  }

  /** The session over the rewritten graph, created on first use (a failure is kept: it is a config error). */
  private ready(): Promise<ort.InferenceSession> {
    this.session ??= this.openSession();
    return this.session;
  }
}

/** The self-attention Softmax nodes of an encoder graph, by layer. */
async function softmaxLayersOf(modelBytes: Uint8Array): Promise<SoftmaxLayer[]> {
  const { onnx } = (await import('onnx-proto')).default;
  return (onnx.ModelProto.decode(modelBytes).graph?.node ?? [])
    .map((node) => ({
      layer: Number(softmaxName.exec(node.name ?? '')?.[1] ?? Number.NaN),
      output: node.output?.[0] ?? '',
    }))
    .filter((entry) => !Number.isNaN(entry.layer))
    .sort((a, b) => a.layer - b.layer);
}

/** The model with these node outputs added as graph outputs (float tensors). */
async function withOutputs(modelBytes: Uint8Array, names: readonly string[]): Promise<Uint8Array> {
  const { onnx } = (await import('onnx-proto')).default;
  const model = onnx.ModelProto.decode(modelBytes);
  const graph = model.graph;
  if (graph === null || graph === undefined)
    throw new LightmemError('config_invalid', 'the model has no graph to read attention from');
  graph.output = [
    ...(graph.output ?? []),
    ...names.map((name) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1 } } })),
  ];
  return onnx.ModelProto.encode(model).finish();
}
