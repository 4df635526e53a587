import { createHash } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import {
  manifestFileName,
  modelFileName,
  tokenizerFileName,
  type ModelManifest,
} from '../../services/models/model-manifest.js';

const { onnx } = onnxProto;

/**
 * Tiny ONNX models and a tiny WordPiece tokenizer for tests, built in memory (no weights shipped).
 *
 * The "embedder" is `Gather(table[vocab, dims], input_ids) → last_hidden_state [batch, seq, dims]`: each
 * token's hidden state is its row of the table, so pooled vectors can be computed by hand. It declares
 * `attention_mask` (and optionally `token_type_ids`) as int64 inputs like a real BERT export, unused.
 */

/** The tiny tokenizer's vocabulary, id = index. */
export const tinyVocab = [
  '[PAD]',
  '[UNK]',
  '[CLS]',
  '[SEP]',
  'i',
  'went',
  'to',
  'the',
  'park',
  'play',
  '##ing',
  'dog',
  '##s',
  'cat',
  'a',
  '.',
] as const;

export const tinyDims = 3;

/** Row v of the tiny model's table: [v, 1, v mod 2]; distinct rows, easy sums. */
export function tinyRow(id: number): number[] {
  return [id, 1, id % 2];
}

/** A tokenizer.json (Hugging Face tokenizers format) for `tinyVocab`: BERT normaliser, pre-tokenizer, [CLS] … [SEP]. */
export function tinyTokenizerJson(): object {
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
    added_tokens: [special(0, '[PAD]'), special(1, '[UNK]'), special(2, '[CLS]'), special(3, '[SEP]')],
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(tinyVocab.map((token, id) => [token, id])),
    },
  };
}

export interface TinyEmbedderModelOptions {
  /** Declare a token_type_ids input (default true). */
  tokenTypeIds?: boolean;
  /** Rows of the embedding table (default: `tinyRow` over `tinyVocab`). */
  table?: readonly (readonly number[])[];
}

/** The serialized ONNX model (opset 13, IR 8). */
export function tinyEmbedderModel(options: TinyEmbedderModelOptions = {}): Uint8Array {
  const table = options.table ?? tinyVocab.map((_, id) => tinyRow(id));
  const dims = table[0]?.length ?? 0;
  return encodeTinyModel({
    name: 'tiny-embedder',
    initializer: [
      {
        name: 'embedding_table',
        dims: [table.length, dims],
        dataType: onnx.TensorProto.DataType.FLOAT,
        floatData: table.flat(),
      },
    ],
    node: [
      {
        opType: 'Gather',
        input: ['embedding_table', 'input_ids'],
        output: ['last_hidden_state'],
        attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }],
      },
    ],
    input: encoderInputs(options.tokenTypeIds ?? true),
    output: [
      {
        name: 'last_hidden_state',
        type: {
          tensorType: {
            elemType: onnx.TensorProto.DataType.FLOAT,
            shape: { dim: [{ dimParam: 'batch' }, { dimParam: 'seq' }, { dimValue: dims }] },
          },
        },
      },
    ],
  });
}

/** The int64 [batch, seq] inputs of a BERT-style encoder: input_ids, attention_mask (and token_type_ids). */
export function encoderInputs(tokenTypeIds: boolean): object[] {
  const int64Input = (name: string) => ({
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.INT64,
        shape: { dim: [{ dimParam: 'batch' }, { dimParam: 'seq' }] },
      },
    },
  });
  const inputs = [int64Input('input_ids'), int64Input('attention_mask')];
  if (tokenTypeIds) inputs.push(int64Input('token_type_ids'));
  return inputs;
}

/** A serialized ONNX model (opset 13, IR 8) of one graph. */
export function encodeTinyModel(graph: {
  name: string;
  initializer: object[];
  node: object[];
  input: object[];
  output: object[];
}): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'lightmem-tests',
    opsetImport: [{ domain: '', version: 13 }],
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Writes `model.onnx`, `tokenizer.json` and `lightmem-model.json` (the manifest with the files' sha256
 * added before `overrides`) into `folder`; returns it.
 */
export async function writeModelFolder(
  folder: string,
  model: Uint8Array,
  tokenizer: string,
  manifest: Omit<ModelManifest, 'files'>,
  overrides: Partial<ModelManifest> = {},
): Promise<string> {
  const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');
  const full: ModelManifest = {
    ...manifest,
    files: { [modelFileName]: sha256(model), [tokenizerFileName]: sha256(tokenizer) },
    ...overrides,
  };
  await writeFile(join(folder, modelFileName), model);
  await writeFile(join(folder, tokenizerFileName), tokenizer);
  await writeFile(join(folder, manifestFileName), JSON.stringify(full, null, 2));
  return folder;
}

export interface TinyEmbedderFolderOptions extends TinyEmbedderModelOptions {
  pooling?: 'cls' | 'mean';
  normalize?: boolean;
  maxLength?: number;
  /** Override manifest fields (e.g. a wrong dims). */
  manifest?: Partial<ModelManifest>;
}

/** Writes model.onnx, tokenizer.json and lightmem-model.json into a new temp folder and returns it. */
export async function writeTinyEmbedderFolder(options: TinyEmbedderFolderOptions = {}): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'lightmem-tiny-embedder-'));
  const model = tinyEmbedderModel(options);
  const manifest = {
    name: 'tiny-embedder',
    kind: 'embedder',
    source: 'local',
    origin: 'test/support/tiny-onnx.ts',
    pooling: options.pooling ?? 'mean',
    normalize: options.normalize ?? false,
    dims: options.table?.[0]?.length ?? tinyDims,
    maxLength: options.maxLength ?? 16,
    fetchedAt: new Date(0).toISOString(),
  } as const;
  return writeModelFolder(folder, model, JSON.stringify(tinyTokenizerJson()), manifest, options.manifest);
}
