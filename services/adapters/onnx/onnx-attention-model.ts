import { availableParallelism } from 'node:os';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { LightmemError } from '../../core/errors.js';
import type { AttentionModel, SentenceAttention } from '../../core/ports/segmenter.js';
import type { HfTokenizer } from './hf-tokenizer.js';
import { createSession, positiveInteger, readModelFolder } from './model-folder.js';

const { onnx } = onnxProto;

export interface OnnxAttentionOptions {
  /** How many of the last encoder layers to average (LightMem: layers 8–11 of 12, i.e. the last 4). */
  readonly lastLayers?: number;
  readonly threads?: number;
}

const softmaxName = /layer\.(\d+)\/attention\/self\/Softmax$/;

/**
 * The attention half of topic segmentation on the installed encoder: the ONNX graph is rewritten at load
 * time so that the attention probabilities (the Softmax of each self-attention layer) are extra graph
 * outputs, and one sequence `[CLS] s1 s2 … [SEP]` is run through it. No separate export is needed.
 */
export class OnnxAttentionModel implements AttentionModel {
  private constructor(
    readonly id: string,
    private readonly session: ort.InferenceSession,
    private readonly tokenizer: HfTokenizer,
    private readonly outputs: readonly string[],
    private readonly prefix: readonly number[],
    private readonly suffix: readonly number[],
    private readonly maxLength: number,
  ) {}

  static async load(folder: string, options: OnnxAttentionOptions = {}): Promise<OnnxAttentionModel> {
    const { manifest, tokenizer, modelPath, modelBytes, modelSha256 } = await readModelFolder(
      folder,
      'embedder',
    );
    const model = onnx.ModelProto.decode(modelBytes);
    const graph = model.graph;
    const layers = (graph?.node ?? [])
      .map((node) => ({ node, layer: Number(softmaxName.exec(node.name ?? '')?.[1] ?? Number.NaN) }))
      .filter((entry) => !Number.isNaN(entry.layer))
      .sort((a, b) => a.layer - b.layer);
    if (graph === null || graph === undefined || layers.length === 0) {
      throw new LightmemError(
        'config_invalid',
        `${modelPath}: no self-attention Softmax nodes to read attention from`,
      );
    }
    const chosen = layers.slice(-Math.max(1, options.lastLayers ?? 4));
    const outputs = chosen.map((entry) => entry.node.output?.[0] ?? '');
    for (const name of outputs) {
      graph.output = [
        ...(graph.output ?? []),
        onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1 } } }),
      ];
    }
    const session = await createSession(
      onnx.ModelProto.encode(model).finish(),
      modelPath,
      positiveInteger(options.threads ?? availableParallelism(), 'threads'),
      'cannot expose attention outputs',
    );
    // The special tokens around a sequence, as the tokenizer's post-processor adds them.
    const probe = tokenizer.encode('hello', { add_special_tokens: false }).ids;
    const full = tokenizer.encode('hello').ids;
    const at = full.findIndex((_, i) => probe.every((id, k) => full[i + k] === id));
    const prefix = at < 0 ? [] : full.slice(0, at);
    const suffix = at < 0 ? [] : full.slice(at + probe.length);
    const sha = modelSha256.slice(0, 12);
    const id = `${manifest.name}@${sha}:attention(L${chosen.map((c) => c.layer).join(',')})`;
    return new OnnxAttentionModel(id, session, tokenizer, outputs, prefix, suffix, manifest.maxLength);
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
    const feeds: Record<string, ort.Tensor> = {
      input_ids: tensor(ids),
      attention_mask: tensor(ids.map(() => 1)),
    };
    if (this.session.inputNames.includes('token_type_ids'))
      feeds['token_type_ids'] = tensor(ids.map(() => 0));
    const result = await this.session.run(feeds, [...this.outputs]);
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
    await this.session.release();
  }
}
