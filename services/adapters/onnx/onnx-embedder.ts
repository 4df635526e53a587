import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { LightmemError } from '../../core/errors.js';
import type { Embedder } from '../../core/ports/embedder.js';
import { ModelManifest, manifestFileName } from '../../models/model-manifest.js';
import { findModelSpec } from '../../models/model-registry.js';
import type { HfTokenizer } from './hf-tokenizer.js';
import { l2Normalize, pool, type Pooling } from './pooling.js';
import { positiveInteger, readModelFolder } from './model-folder.js';
import { createOptimizedSession } from './optimized-model.js';
import { tokenBudgetBatches } from './batching.js';

export interface OnnxEmbedderOptions {
  /** Intra-op threads of the session (default: the number of CPUs). Inter-op threads are always 1. */
  threads?: number;
  /** Texts per session run at most (default 32). Texts are sorted by token length first. */
  batchSize?: number;
  /**
   * Padded tokens per session run at most (rows × the longest row; default 4096): texts sorted by length
   * are cut into runs within this budget, so long texts run a few at a time and short ones many at a
   * time. A text longer than the budget runs alone.
   */
  batchTokens?: number;
}

/** A text after tokenization and truncation. */
interface Encoded {
  ids: number[];
  typeIds: number[];
}

const defaultBatchSize = 32;
const defaultBatchTokens = 4096;
const warmUpText = 'Warm-up: the quick brown fox jumps over the lazy dog.';

/**
 * An Embedder over any transformer encoder exported to ONNX, loaded from a model folder (see
 * `model-manifest.ts`): `model.onnx`, `tokenizer.json` (Hugging Face tokenizers format, read with
 * `@huggingface/tokenizers`) and `lightmem-model.json`, which gives pooling, normalisation, dims and the
 * maximum length. Texts are truncated at that length (keeping the trailing special tokens), sorted by
 * length and batched, run, pooled and normalised, and returned in input order.
 */
export class OnnxEmbedder implements Embedder {
  /** `<name>@<first 12 hex of sha256(model.onnx)>`: a different export of the same model is another embedder. */
  readonly id: string;
  readonly dims: number;
  readonly maxLength: number;
  readonly pooling: Pooling;
  readonly normalize: boolean;
  readonly queryPrefix: string | undefined;
  readonly batchSize: number;
  readonly batchTokens: number;
  private readonly hasAttentionMask: boolean;
  private readonly hasTokenTypeIds: boolean;
  private readonly outputName: string;

  private constructor(
    readonly manifest: ModelManifest,
    private readonly tokenizer: HfTokenizer,
    private readonly session: ort.InferenceSession,
    modelSha256: string,
    /** Special tokens the post-processor puts after the text (e.g. [SEP]); kept when truncating. */
    private readonly suffixLength: number,
    private readonly padId: number,
    batchSize: number,
    batchTokens: number,
  ) {
    this.id = `${manifest.name}@${modelSha256.slice(0, 12)}`;
    this.dims = manifest.dims;
    this.maxLength = manifest.maxLength;
    this.pooling = manifest.pooling ?? 'mean';
    this.normalize = manifest.normalize;
    // Folders fetched before manifests carried it: the registry's entry of the same model.
    this.queryPrefix = manifest.queryPrefix ?? findModelSpec(manifest.name)?.queryPrefix;
    this.batchSize = batchSize;
    this.batchTokens = batchTokens;
    this.hasAttentionMask = session.inputNames.includes('attention_mask');
    this.hasTokenTypeIds = session.inputNames.includes('token_type_ids');
    this.outputName = session.outputNames.includes('last_hidden_state')
      ? 'last_hidden_state'
      : (session.outputNames[0] ?? '');
  }

  static async load(folder: string, options: OnnxEmbedderOptions = {}): Promise<OnnxEmbedder> {
    const batchSize = positiveInteger(options.batchSize ?? defaultBatchSize, 'batchSize');
    const batchTokens = positiveInteger(options.batchTokens ?? defaultBatchTokens, 'batchTokens');
    const threads = positiveInteger(options.threads ?? availableParallelism(), 'threads');
    const { manifest, tokenizer, tokenizerText, modelPath, modelSha256 } = await readModelFolder(
      folder,
      'embedder',
    );
    const session = await createOptimizedSession(modelPath, modelSha256, threads);
    if (!session.inputNames.includes('input_ids') || session.outputNames.length === 0) {
      await session.release();
      throw new LightmemError(
        'config_invalid',
        `${modelPath}: an embedder needs an input_ids input and an output (inputs: ${session.inputNames.join(', ')})`,
      );
    }

    const embedder = new OnnxEmbedder(
      manifest,
      tokenizer,
      session,
      modelSha256,
      suffixLengthOf(tokenizer),
      padIdOf(tokenizer, tokenizerText),
      batchSize,
      batchTokens,
    );
    if (embedder.maxLength <= embedder.suffixLength + 1) {
      await session.release();
      throw new LightmemError(
        'config_invalid',
        `${manifestFileName}: maxLength ${embedder.maxLength} is too small`,
      );
    }
    // Warm-up run, which also checks the manifest's dims against what the model really outputs.
    try {
      await embedder.embed([warmUpText]);
    } catch (error) {
      await session.release();
      throw error;
    }
    return embedder;
  }

  /** Token ids of `text` as the model sees them: special tokens added, truncated at maxLength. */
  tokenize(text: string): number[] {
    return this.encode(text).ids;
  }

  /** Tokens of each text as the model sees them (special tokens included, truncated), without padding. */
  tokenCounts(texts: readonly string[]): number[] {
    return texts.map((text) => this.encode(text).ids.length);
  }

  /** The [rows, seq] of each session run `embed(texts)` makes, in order: padding included. */
  batchShapes(texts: readonly string[]): { rows: number; seq: number }[] {
    const lengths = this.tokenCounts(texts);
    return this.batchesOf(lengths).map((indexes) => ({
      rows: indexes.length,
      seq: Math.max(...indexes.map((index) => lengths[index] ?? 0)),
    }));
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const encoded = texts.map((text) => this.encode(text));
    const out = new Array<Float32Array>(texts.length);
    for (const indexes of this.batchesOf(encoded.map((item) => item.ids.length))) {
      const vectors = await this.runBatch(indexes.map((index) => encoded[index] as Encoded));
      indexes.forEach((index, row) => (out[index] = vectors[row] as Float32Array));
    }
    return out;
  }

  /** Releases the ONNX session. The embedder is unusable afterwards. */
  async close(): Promise<void> {
    await this.session.release();
  }

  private batchesOf(lengths: readonly number[]): number[][] {
    return tokenBudgetBatches(lengths, { maxRows: this.batchSize, maxTokens: this.batchTokens });
  }

  private encode(text: string): Encoded {
    const encoding = this.tokenizer.encode(text, { return_token_type_ids: true });
    let ids = encoding.ids;
    let typeIds = encoding.token_type_ids ?? ids.map(() => 0);
    if (ids.length > this.maxLength) {
      // Keep the head of the text and the trailing special tokens ([SEP]), as HF truncation does.
      const keep = this.maxLength - this.suffixLength;
      ids = [...ids.slice(0, keep), ...ids.slice(ids.length - this.suffixLength)];
      typeIds = [...typeIds.slice(0, keep), ...typeIds.slice(typeIds.length - this.suffixLength)];
    }
    return { ids, typeIds };
  }

  private async runBatch(batch: readonly Encoded[]): Promise<Float32Array[]> {
    const rows = batch.length;
    const seq = Math.max(...batch.map((item) => item.ids.length));
    const ids = new BigInt64Array(rows * seq).fill(BigInt(this.padId));
    const mask = new BigInt64Array(rows * seq);
    const typeIds = new BigInt64Array(rows * seq);
    batch.forEach((item, row) => {
      item.ids.forEach((id, t) => {
        ids[row * seq + t] = BigInt(id);
        mask[row * seq + t] = 1n;
        typeIds[row * seq + t] = BigInt(item.typeIds[t] ?? 0);
      });
    });
    const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, [rows, seq]) };
    if (this.hasAttentionMask) feeds['attention_mask'] = new ort.Tensor('int64', mask, [rows, seq]);
    if (this.hasTokenTypeIds) feeds['token_type_ids'] = new ort.Tensor('int64', typeIds, [rows, seq]);

    const results = await this.session.run(feeds);
    const output = results[this.outputName];
    try {
      if (output === undefined)
        throw new LightmemError('internal', `the model returned no ${this.outputName}`);
      if (output.type !== 'float32' || !(output.data instanceof Float32Array))
        throw new LightmemError('config_invalid', `${this.outputName} is ${output.type}, expected float32`);
      const dims = output.dims;
      const width = dims[dims.length - 1];
      if (width !== this.dims)
        throw new LightmemError(
          'config_invalid',
          `${manifestFileName} of ${this.manifest.name} says dims ${this.dims}, the model outputs ${width}`,
        );
      let vectors: Float32Array[];
      if (dims.length === 3 && dims[0] === rows && dims[1] === seq) {
        vectors = pool(this.pooling, output.data, mask, rows, seq, this.dims);
      } else if (dims.length === 2 && dims[0] === rows) {
        // An export that pools inside the graph (e.g. a sentence_embedding output).
        vectors = Array.from({ length: rows }, (_, row) =>
          (output.data as Float32Array).slice(row * this.dims, (row + 1) * this.dims),
        );
      } else {
        throw new LightmemError(
          'config_invalid',
          `${this.outputName} has shape [${dims.join(', ')}], expected [${rows}, ${seq}, ${this.dims}]`,
        );
      }
      return this.normalize ? vectors.map(l2Normalize) : vectors;
    } finally {
      for (const value of Object.values(results)) value.dispose();
    }
  }
}

/**
 * How many special tokens the post-processor appends after the text (1 for BERT's [SEP]), found by
 * encoding a probe with and without special tokens. Truncation keeps them.
 */
function suffixLengthOf(tokenizer: HfTokenizer): number {
  const probe = 'hello world';
  const full = tokenizer.encode(probe).ids;
  const plain = tokenizer.encode(probe, { add_special_tokens: false }).ids;
  for (let start = 0; start + plain.length <= full.length; start++) {
    if (plain.every((id, i) => full[start + i] === id)) return full.length - start - plain.length;
  }
  return 0;
}

/** The padding id: tokenizer.json's `padding.pad_id`, else the id of a [PAD]/<pad> token, else 0. */
function padIdOf(tokenizer: HfTokenizer, tokenizerText: string): number {
  const json = JSON.parse(tokenizerText) as { padding?: { pad_id?: unknown } | null };
  const padId = json.padding?.pad_id;
  if (typeof padId === 'number') return padId;
  return tokenizer.token_to_id('[PAD]') ?? tokenizer.token_to_id('<pad>') ?? 0;
}
