import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { LightmemError, errorMessage } from '../../core/errors.js';
import type { ScoredWord, TokenScorer } from '../../core/ports/token-scorer.js';
import { approxTokenCount } from '../../core/text/token-count.js';
import { ModelManifest } from '../../models/model-manifest.js';
import {
  chunkTokens,
  keepProbability,
  mergeSubwords,
  type SubwordScheme,
} from '../../stages/compressor/subword-words.js';
import type { HfTokenizer } from './hf-tokenizer.js';
import { positiveInteger, readModelFolder } from './model-folder.js';
import { createOptimizedSession } from './optimized-model.js';
import { tokenBudgetBatches } from './batching.js';

export interface OnnxTokenScorerOptions {
  /** Intra-op threads of the session (default: the number of CPUs). Inter-op threads are always 1. */
  threads?: number;
  /** Chunks per session run at most (default 50, LLMLingua-2's `max_batch_size`). Chunks are sorted by length first. */
  batchSize?: number;
  /** Padded tokens per session run at most (rows × longest chunk; default 8192): see `tokenBudgetBatches`. */
  batchTokens?: number;
}

/** LLMLingua-2 chunks texts at 512 − 2 subword tokens (the special tokens come on top). */
export const maxChunkTokens = 510;
const defaultBatchSize = 50;
const defaultBatchTokens = 8192;
const labels = 2;
const warmUpText = 'Warm-up: the quick brown fox jumps over the lazy dog.';

/** A text's whitespace words and their subword tokens, all in one flat list. */
interface TokenizedText {
  readonly words: readonly string[];
  readonly ids: readonly number[];
  readonly tokens: readonly string[];
  /** Index of the whitespace word each subword token belongs to. */
  readonly wordOf: readonly number[];
}

/** A run of at most `maxChunkTokens` subword tokens of one text. */
interface Chunk {
  readonly text: number;
  readonly start: number;
  readonly end: number;
}

/**
 * A TokenScorer over any LLMLingua-2 export (a 2-label token-classification model, label 1 = keep, e.g.
 * `microsoft/llmlingua-2-bert-base-multilingual-cased-meetingbank` or `…-xlm-roberta-large-meetingbank`
 * exported to ONNX with output `logits` [batch, seq, 2]), loaded from a model folder: `model.onnx`,
 * `tokenizer.json` (read with `@huggingface/tokenizers`) and `lightmem-model.json` of kind
 * `token-classifier`.
 *
 * As LLMLingua-2 does (reference §4.3): texts are tokenized, chunked at ≤ 510 subword tokens (preferring a
 * `.`/newline end), run through the model (chunks of all texts batched, sorted by length, padded), each
 * token's keep probability is softmax(logits)[1], and a word's probability is the mean of its subwords'.
 * Words are the text's whitespace words (what XLM-R's `▁` marks; for WordPiece models the punctuation
 * BERT splits off stays with its word), so the words joined by spaces give back the text, casing included.
 */
export class OnnxTokenScorer implements TokenScorer {
  /** `<name>@<first 12 hex of sha256(model.onnx)>`: another export of the same model is another scorer. */
  readonly version: string;
  readonly batchSize: number;
  readonly batchTokens: number;
  /** Subword tokens per chunk, special tokens excluded. */
  readonly chunkTokens: number;
  private readonly hasAttentionMask: boolean;
  private readonly hasTokenTypeIds: boolean;
  private readonly outputName: string;

  private constructor(
    readonly manifest: ModelManifest,
    private readonly tokenizer: HfTokenizer,
    private readonly session: ort.InferenceSession,
    modelSha256: string,
    /** How the tokenizer marks words: `##` continues one (WordPiece), `▁` starts one (SentencePiece). */
    readonly scheme: SubwordScheme,
    /** Special tokens the post-processor puts around a text ([CLS] … [SEP], <s> … </s>). */
    private readonly prefix: readonly number[],
    private readonly suffix: readonly number[],
    private readonly padId: number,
    batchSize: number,
    batchTokens: number,
  ) {
    this.version = `${manifest.name}@${modelSha256.slice(0, 12)}`;
    this.batchSize = batchSize;
    this.batchTokens = batchTokens;
    this.chunkTokens = Math.min(maxChunkTokens, manifest.maxLength - prefix.length - suffix.length);
    this.hasAttentionMask = session.inputNames.includes('attention_mask');
    this.hasTokenTypeIds = session.inputNames.includes('token_type_ids');
    this.outputName = session.outputNames.includes('logits') ? 'logits' : (session.outputNames[0] ?? '');
  }

  /**
   * Loads the model folder and checks it with one warm-up run. Errors are LightmemErrors, never retryable:
   * `not_found` for a missing file, `config_invalid` for a bad manifest, tokenizer or model (wrong inputs,
   * or an output that is not [batch, seq, 2] float logits).
   */
  static async load(folder: string, options: OnnxTokenScorerOptions = {}): Promise<OnnxTokenScorer> {
    const batchSize = positiveInteger(options.batchSize ?? defaultBatchSize, 'batchSize');
    const batchTokens = positiveInteger(options.batchTokens ?? defaultBatchTokens, 'batchTokens');
    const threads = positiveInteger(options.threads ?? availableParallelism(), 'threads');
    const { manifest, manifestPath, tokenizer, tokenizerText, tokenizerPath, modelPath, modelSha256 } =
      await readModelFolder(folder, 'token-classifier', (m, path) => {
        if (m.dims !== labels)
          throw new LightmemError(
            'config_invalid',
            `${path}: an LLMLingua-2 token classifier has 2 labels (drop, keep); dims is ${m.dims}`,
            { field: 'dims' },
          );
      });
    const scheme = subwordSchemeOf(tokenizer, tokenizerText, tokenizerPath);
    const { prefix, suffix } = specialTokensOf(tokenizer);
    if (manifest.maxLength - prefix.length - suffix.length < 1)
      throw new LightmemError(
        'config_invalid',
        `${manifestPath}: maxLength ${manifest.maxLength} is too small`,
        {
          field: 'maxLength',
        },
      );

    const session = await createOptimizedSession(modelPath, modelSha256, threads);
    const outputs = session.outputNames;
    if (!session.inputNames.includes('input_ids') || (!outputs.includes('logits') && outputs.length !== 1)) {
      await session.release();
      throw new LightmemError(
        'config_invalid',
        `${modelPath}: a token classifier needs an input_ids input and a logits output (inputs: ${session.inputNames.join(', ')}; outputs: ${outputs.join(', ')})`,
      );
    }

    const scorer = new OnnxTokenScorer(
      manifest,
      tokenizer,
      session,
      modelSha256,
      scheme,
      prefix,
      suffix,
      padIdOf(tokenizer, tokenizerText),
      batchSize,
      batchTokens,
    );
    // Warm-up run, which also checks that the model really outputs [batch, seq, 2] logits.
    try {
      await scorer.score([warmUpText]);
    } catch (error) {
      await session.release();
      if (error instanceof LightmemError) throw error;
      throw new LightmemError(
        'config_invalid',
        `${modelPath}: the model does not run: ${errorMessage(error)}`,
        {
          cause: error,
        },
      );
    }
    return scorer;
  }

  async score(texts: readonly string[]): Promise<ScoredWord[][]> {
    if (texts.length === 0) return [];
    const tokenized = this.tokenizeTexts(texts);
    const chunks: Chunk[] = [];
    tokenized.forEach((text, index) => {
      for (const [start, end] of chunkTokens(text.tokens, this.chunkTokens, this.scheme))
        chunks.push({ text: index, start, end });
    });
    const probabilities = tokenized.map((text) => new Float64Array(text.ids.length));
    // Sorted by length and cut within a padded-token budget (special tokens included), as the embedder does.
    const extra = this.prefix.length + this.suffix.length;
    for (const indexes of tokenBudgetBatches(
      chunks.map((chunk) => chunk.end - chunk.start + extra),
      { maxRows: this.batchSize, maxTokens: this.batchTokens },
    )) {
      const batch = indexes.map((index) => chunks[index] as Chunk);
      const rows = await this.runBatch(
        batch.map((chunk) => tokenized[chunk.text]?.ids.slice(chunk.start, chunk.end) ?? []),
      );
      batch.forEach((chunk, row) => probabilities[chunk.text]?.set(rows[row] ?? [], chunk.start));
    }
    return tokenized.map((text, index) => this.mergeWords(text, probabilities[index] ?? new Float64Array()));
  }

  /** Releases the ONNX session. The scorer is unusable afterwards. */
  async close(): Promise<void> {
    await this.session.release();
  }

  /** Whitespace words, each tokenized on its own (the pre-tokenizers split at whitespace anyway). */
  private tokenizeTexts(texts: readonly string[]): TokenizedText[] {
    const cache = new Map<string, { ids: number[]; tokens: string[] }>();
    return texts.map((text) => {
      const words = text.split(/\s+/).filter((word) => word.length > 0);
      const ids: number[] = [];
      const tokens: string[] = [];
      const wordOf: number[] = [];
      words.forEach((word, index) => {
        let encoded = cache.get(word);
        if (encoded === undefined) {
          const encoding = this.tokenizer.encode(word, { add_special_tokens: false });
          encoded = { ids: encoding.ids, tokens: encoding.tokens };
          cache.set(word, encoded);
        }
        ids.push(...encoded.ids);
        tokens.push(...encoded.tokens);
        for (let i = 0; i < encoded.ids.length; i++) wordOf.push(index);
      });
      return { words, ids, tokens, wordOf };
    });
  }

  /**
   * LLMLingua-2's token→word merge (mean of the subwords' keep probabilities) over the whitespace words:
   * each word's subwords are marked as one word for `mergeSubwords`. A word the tokenizer drops entirely
   * (only characters it removes) has no subwords and gets keep 0.
   */
  private mergeWords(text: TokenizedText, probabilities: Float64Array): ScoredWord[] {
    const spans = text.words.map(() => ({ start: 0, end: 0 }));
    text.wordOf.forEach((word, t) => {
      const span = spans[word];
      if (span === undefined) return;
      if (span.end === span.start) span.start = t;
      span.end = t + 1;
    });
    return text.words.map((word, index) => {
      const span = spans[index] ?? { start: 0, end: 0 };
      const probs = Array.from(probabilities.subarray(span.start, span.end));
      const tokens = asOneWord(text.tokens.slice(span.start, span.end), this.scheme);
      const merged = mergeSubwords(tokens, probs, this.scheme);
      const keep =
        merged.length === 1
          ? (merged[0]?.keep ?? 0)
          : probs.length === 0
            ? 0
            : probs.reduce((sum, p) => sum + p, 0) / probs.length;
      return { word, keep, tokens: Math.max(1, approxTokenCount(word)) };
    });
  }

  /** Keep probabilities of each chunk's subword tokens (special tokens around them excluded). */
  private async runBatch(batch: readonly (readonly number[])[]): Promise<Float64Array[]> {
    const rows = batch.length;
    const sequences = batch.map((ids) => [...this.prefix, ...ids, ...this.suffix]);
    const seq = Math.max(...sequences.map((ids) => ids.length));
    const ids = new BigInt64Array(rows * seq).fill(BigInt(this.padId));
    const mask = new BigInt64Array(rows * seq);
    sequences.forEach((sequence, row) => {
      sequence.forEach((id, t) => {
        ids[row * seq + t] = BigInt(id);
        mask[row * seq + t] = 1n;
      });
    });
    const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, [rows, seq]) };
    if (this.hasAttentionMask) feeds['attention_mask'] = new ort.Tensor('int64', mask, [rows, seq]);
    if (this.hasTokenTypeIds)
      feeds['token_type_ids'] = new ort.Tensor('int64', new BigInt64Array(rows * seq), [rows, seq]);

    const results = await this.session.run(feeds);
    try {
      const output = results[this.outputName];
      if (output === undefined)
        throw new LightmemError('internal', `the model returned no ${this.outputName}`);
      const dims = output.dims;
      if (!(output.data instanceof Float32Array))
        throw new LightmemError('config_invalid', `${this.outputName} is ${output.type}, expected float32`);
      if (dims.length !== 3 || dims[0] !== rows || dims[1] !== seq || dims[2] !== labels)
        throw new LightmemError(
          'config_invalid',
          `${this.manifest.name}: ${this.outputName} has shape [${dims.join(', ')}], expected [${rows}, ${seq}, ${labels}] (a 2-label token classifier)`,
        );
      const data = output.data;
      return batch.map((chunk, row) => {
        const out = new Float64Array(chunk.length);
        for (let t = 0; t < chunk.length; t++) {
          const at = (row * seq + this.prefix.length + t) * labels;
          out[t] = keepProbability(data[at] ?? 0, data[at + 1] ?? 0);
        }
        return out;
      });
    } finally {
      for (const value of Object.values(results)) value.dispose();
    }
  }
}

/** A whitespace word's subwords marked as one word: the first starts it, the others continue it. */
function asOneWord(tokens: readonly string[], scheme: SubwordScheme): string[] {
  return tokens.map((token, i) => {
    if (scheme === 'wordpiece') return i === 0 || token.startsWith('##') ? token : `##${token}`;
    if (i === 0) return token.startsWith('▁') ? token : `▁${token}`;
    return token.startsWith('▁') ? token.slice(1) : token;
  });
}

/**
 * WordPiece (BERT: `##` continues a word) or SentencePiece (XLM-R: `▁` starts one), from tokenizer.json's
 * model and pre-tokenizer, else from how a probe is tokenized.
 */
function subwordSchemeOf(tokenizer: HfTokenizer, tokenizerText: string, path: string): SubwordScheme {
  const json = JSON.parse(tokenizerText) as { model?: { type?: unknown } };
  if (json.model?.type === 'WordPiece') return 'wordpiece';
  if (json.model?.type === 'Unigram' || tokenizerText.includes('"Metaspace"')) return 'sentencepiece';
  const probe = tokenizer.tokenize('hello world again');
  if (probe.some((token) => token.startsWith('▁'))) return 'sentencepiece';
  if (probe.some((token) => token.startsWith('##'))) return 'wordpiece';
  throw new LightmemError(
    'config_invalid',
    `${path}: neither a WordPiece (BERT) nor a SentencePiece (XLM-R) tokenizer, as LLMLingua-2 models use`,
  );
}

/** The special tokens the post-processor puts before and after a text, found by encoding a probe. */
function specialTokensOf(tokenizer: HfTokenizer): { prefix: number[]; suffix: number[] } {
  const probe = tokenizer.encode('hello', { add_special_tokens: false }).ids;
  const full = tokenizer.encode('hello').ids;
  const at = full.findIndex((_, i) => probe.every((id, k) => full[i + k] === id));
  if (at < 0 || probe.length === 0) return { prefix: [], suffix: [] };
  return { prefix: full.slice(0, at), suffix: full.slice(at + probe.length) };
}

/** The padding id: tokenizer.json's `padding.pad_id`, else the id of a [PAD]/<pad> token, else 0. */
function padIdOf(tokenizer: HfTokenizer, tokenizerText: string): number {
  const json = JSON.parse(tokenizerText) as { padding?: { pad_id?: unknown } | null };
  const padId = json.padding?.pad_id;
  if (typeof padId === 'number') return padId;
  return tokenizer.token_to_id('[PAD]') ?? tokenizer.token_to_id('<pad>') ?? 0;
}
