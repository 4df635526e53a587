import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import type { ModelManifest } from '../../services/models/model-manifest.js';
import {
  encodeTinyModel,
  encoderInputs,
  tinyTokenizerJson,
  tinyVocab,
  writeModelFolder,
} from './tiny-onnx.js';

const { onnx } = onnxProto;

/**
 * A tiny LLMLingua-2-shaped token classifier for tests, built in memory (no weights shipped):
 * `Gather(table[vocab, labels], input_ids) → logits [batch, seq, labels]`, so every token's logits are a
 * known row of the table whatever its context. With `maxPositions`, a position table of that many rows
 * (zeros) is added like BERT's position embeddings, so the model fails on a longer input, as a real one
 * does past 512 tokens. It uses the tiny WordPiece tokenizer of tiny-onnx.ts by default.
 */

/** Hand-chosen keep logits (label 1; label 0 is 0) of the tiny vocabulary: content words high. */
export const tinyKeepLogits: Readonly<Record<(typeof tinyVocab)[number], number>> = {
  '[PAD]': 0,
  '[UNK]': 0,
  '[CLS]': 0,
  '[SEP]': 0,
  i: -1,
  went: 1,
  to: -2,
  the: -3,
  park: 3,
  play: 2,
  '##ing': 0,
  dog: 2.5,
  '##s': -1,
  cat: 1.5,
  a: -2.5,
  '.': -4,
};

/** The default logits table: row id = [0, keep logit of token id]. */
export function tinyClassifierTable(vocab: readonly string[] = tinyVocab): number[][] {
  return vocab.map((token) => [0, (tinyKeepLogits as Record<string, number>)[token] ?? 0]);
}

/** softmax([0, k])[1]: the keep probability of a token whose row is [0, k]. */
export function sigmoid(k: number): number {
  return 1 / (1 + Math.exp(-k));
}

export interface TinyClassifierModelOptions {
  /** Rows of the logits table, one per token id (default `tinyClassifierTable()`); row length = labels. */
  table?: readonly (readonly number[])[];
  /** Declare a token_type_ids input (default true). */
  tokenTypeIds?: boolean;
  /** Name of the output (default `logits`). */
  outputName?: string;
  /** `pooled`: average over the sequence, giving [batch, labels] (a wrongly shaped model). */
  shape?: 'tokens' | 'pooled';
  /** Longest sequence the model accepts (special tokens included); unlimited when absent. */
  maxPositions?: number;
}

/** The serialized ONNX model (opset 13, IR 8). */
export function tinyClassifierModel(options: TinyClassifierModelOptions = {}): Uint8Array {
  const table = options.table ?? tinyClassifierTable();
  const labels = table[0]?.length ?? 0;
  const outputName = options.outputName ?? 'logits';
  const int64 = (name: string, values: number[], dims: number[]) => ({
    name,
    dims,
    dataType: onnx.TensorProto.DataType.INT64,
    int64Data: values,
  });
  const initializer: object[] = [
    {
      name: 'logit_table',
      dims: [table.length, labels],
      dataType: onnx.TensorProto.DataType.FLOAT,
      floatData: table.flat(),
    },
  ];
  const gather = (input: string[], output: string) => ({
    opType: 'Gather',
    input,
    output: [output],
    attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }],
  });
  const node: object[] = [gather(['logit_table', 'input_ids'], 'token_logits')];
  let last = 'token_logits';
  if (options.maxPositions !== undefined) {
    initializer.push(
      {
        name: 'position_table',
        dims: [options.maxPositions, labels],
        dataType: onnx.TensorProto.DataType.FLOAT,
        floatData: new Array<number>(options.maxPositions * labels).fill(0),
      },
      int64('one_index', [1], []),
      int64('zero', [0], []),
      int64('one', [1], []),
    );
    node.push(
      { opType: 'Shape', input: ['input_ids'], output: ['ids_shape'] },
      gather(['ids_shape', 'one_index'], 'seq_length'),
      { opType: 'Range', input: ['zero', 'seq_length', 'one'], output: ['positions'] },
      gather(['position_table', 'positions'], 'position_logits'),
      { opType: 'Add', input: ['token_logits', 'position_logits'], output: ['with_positions'] },
    );
    last = 'with_positions';
  }
  const pooled = options.shape === 'pooled';
  node.push(
    pooled
      ? {
          opType: 'ReduceMean',
          input: [last],
          output: [outputName],
          attribute: [
            { name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [1] },
            { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 },
          ],
        }
      : { opType: 'Identity', input: [last], output: [outputName] },
  );
  const outputDims = pooled
    ? [{ dimParam: 'batch' }, { dimValue: labels }]
    : [{ dimParam: 'batch' }, { dimParam: 'seq' }, { dimValue: labels }];
  return encodeTinyModel({
    name: 'tiny-token-classifier',
    initializer,
    node,
    input: encoderInputs(options.tokenTypeIds ?? true),
    output: [
      {
        name: outputName,
        type: {
          tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: outputDims } },
        },
      },
    ],
  });
}

/** SentencePiece-style (XLM-R) tiny vocabulary: `▁` starts a word. */
export const tinySentencePieceVocab = [
  '<s>',
  '<pad>',
  '</s>',
  '<unk>',
  '▁i',
  '▁went',
  '▁play',
  'ing',
  '▁dog',
  's',
  '▁park',
  '.',
  '▁',
] as const;

/** A tokenizer.json for `tinySentencePieceVocab`: Unigram model, Metaspace pre-tokenizer, <s> … </s>. */
export function tinySentencePieceTokenizerJson(): object {
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<s>'), special(1, '<pad>'), special(2, '</s>'), special(3, '<unk>')],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      special_tokens: {
        '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] },
        '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] },
      },
    },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    model: {
      type: 'Unigram',
      unk_id: 3,
      byte_fallback: false,
      vocab: tinySentencePieceVocab.map((piece) => [piece, piece.length > 2 ? -1 : -3]),
    },
  };
}

export interface TinyClassifierFolderOptions extends TinyClassifierModelOptions {
  /** tokenizer.json contents (default: the tiny WordPiece tokenizer of tiny-onnx.ts). */
  tokenizer?: object;
  maxLength?: number;
  /** Override manifest fields (e.g. a wrong kind). */
  manifest?: Partial<ModelManifest>;
}

/** Writes model.onnx, tokenizer.json and lightmem-model.json (kind token-classifier) into `folder` or a new temp folder. */
export async function writeTinyClassifierFolder(
  options: TinyClassifierFolderOptions = {},
  folder?: string,
): Promise<string> {
  const dir = folder ?? (await mkdtemp(join(tmpdir(), 'lightmem-tiny-classifier-')));
  const model = tinyClassifierModel(options);
  const manifest = {
    name: 'tiny-llmlingua',
    kind: 'token-classifier',
    source: 'local',
    origin: 'test/support/tiny-token-classifier.ts',
    normalize: false,
    dims: 2,
    maxLength: options.maxLength ?? 512,
    fetchedAt: new Date(0).toISOString(),
  } as const;
  const tokenizer = JSON.stringify(options.tokenizer ?? tinyTokenizerJson());
  return writeModelFolder(dir, model, tokenizer, manifest, options.manifest);
}
