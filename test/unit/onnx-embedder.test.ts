import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LightmemError } from '../../services/core/errors.js';
import { createTokenizer } from '../../services/adapters/onnx/hf-tokenizer.js';
import { OnnxEmbedder } from '../../services/adapters/onnx/onnx-embedder.js';
import { clsPool, l2Normalize, meanPool, pool } from '../../services/adapters/onnx/pooling.js';
import {
  manifestFileName,
  modelFileName,
  tokenizerFileName,
  type ModelManifest,
} from '../../services/models/model-manifest.js';
import { tinyRow, tinyTokenizerJson, tinyVocab, writeTinyEmbedderFolder } from '../support/tiny-onnx.js';
import { bgeTokenizer, realBgeFolder, skipBge } from '../support/real-models.js';

const folders: string[] = [];
after(async () => {
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

async function tinyFolder(options: Parameters<typeof writeTinyEmbedderFolder>[0] = {}): Promise<string> {
  const folder = await writeTinyEmbedderFolder(options);
  folders.push(folder);
  return folder;
}

/** Id of a token of the tiny vocabulary. */
function id(token: (typeof tinyVocab)[number]): number {
  return tinyVocab.indexOf(token);
}

/** Mean of the tiny table's rows for `ids`, then optionally L2-normalised: the hand computation. */
function expectedMean(ids: readonly number[], normalize = false): number[] {
  const sum = [0, 0, 0];
  for (const tokenId of ids) tinyRow(tokenId).forEach((value, d) => (sum[d] = (sum[d] ?? 0) + value));
  const mean = sum.map((value) => value / ids.length);
  if (!normalize) return mean;
  const norm = Math.hypot(...mean);
  return mean.map((value) => value / norm);
}

function assertClose(actual: ArrayLike<number>, expected: readonly number[], message?: string): void {
  assert.equal(actual.length, expected.length, message);
  for (let i = 0; i < expected.length; i++)
    assert.ok(
      Math.abs((actual[i] ?? NaN) - (expected[i] ?? NaN)) < 1e-5,
      `${message ?? ''} [${i}]: ${Array.from(actual).join(',')} vs ${expected.join(',')}`,
    );
}

function dot(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] ?? 0) * (b[i] ?? 0);
  return sum;
}

describe('tokenizer round trips', () => {
  const tokenizer = createTokenizer(tinyTokenizerJson());

  it('encodes known words with [CLS] … [SEP]', () => {
    const encoding = tokenizer.encode('I went to the park.');
    assert.deepEqual(encoding.ids, [2, 4, 5, 6, 7, 8, 15, 3]);
    assert.deepEqual(encoding.tokens, ['[CLS]', 'i', 'went', 'to', 'the', 'park', '.', '[SEP]']);
    assert.equal(tokenizer.decode(encoding.ids, { skip_special_tokens: true }), 'i went to the park.');
  });

  it('maps an unknown word to [UNK]', () => {
    assert.deepEqual(tokenizer.encode('the zebra').ids, [2, 7, 1, 3]);
  });

  it('splits subwords with the ## continuation prefix', () => {
    const encoding = tokenizer.encode('Playing dogs');
    assert.deepEqual(encoding.tokens, ['[CLS]', 'play', '##ing', 'dog', '##s', '[SEP]']);
    assert.deepEqual(encoding.ids, [2, 9, 10, 11, 12, 3]);
    assert.equal(tokenizer.decode(encoding.ids, { skip_special_tokens: true }), 'playing dogs');
  });

  it('round trips on the real bge tokenizer', { skip: skipBge }, async () => {
    const bge = createTokenizer(JSON.parse(await readFile(bgeTokenizer, 'utf8')) as object);
    const text = 'I went to a LGBTQ support group yesterday.';
    const ids = bge.encode(text).ids;
    assert.equal(ids[0], 101);
    assert.equal(ids.at(-1), 102);
    assert.ok(ids.length > 10);
    assert.equal(bge.decode(ids, { skip_special_tokens: true }), text.toLowerCase());
  });
});

describe('pooling (pure)', () => {
  // batch 2, seq 3, dims 2; row 1 has one padding position.
  const hidden = new Float32Array([1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 99, 99]);
  const mask = [1, 1, 1, 1, 1, 0];

  it('mean pooling averages the masked-in tokens only', () => {
    const [a, b] = meanPool(hidden, mask, 2, 3, 2);
    assertClose(a ?? [], [3, 4]);
    assertClose(b ?? [], [20, 30]);
  });

  it('CLS pooling takes position 0', () => {
    const [a, b] = clsPool(hidden, 2, 3, 2);
    assertClose(a ?? [], [1, 2]);
    assertClose(b ?? [], [10, 20]);
  });

  it('accepts a bigint mask, and an all-padding row pools to zeros', () => {
    const [, b] = pool('mean', hidden, [1n, 1n, 1n, 0n, 0n, 0n], 2, 3, 2);
    assertClose(b ?? [], [0, 0]);
  });

  it('rejects shapes that do not match', () => {
    assert.throws(() => pool('mean', hidden, mask, 2, 2, 2), RangeError);
  });

  it('L2 normalisation gives unit length and keeps the zero vector', () => {
    assertClose(l2Normalize(new Float32Array([3, 4])), [0.6, 0.8]);
    assertClose(l2Normalize(new Float32Array([0, 0])), [0, 0]);
  });
});

describe('OnnxEmbedder on a tiny Gather model', () => {
  it('mean pooling equals the hand-computed mean of the table rows', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder({ pooling: 'mean' }));
    assert.equal(embedder.dims, 3);
    assert.match(embedder.id, /^tiny-embedder@[0-9a-f]{12}$/);
    const [dog] = await embedder.embed(['dog']);
    assertClose(dog ?? [], expectedMean([2, id('dog'), 3]));
    assertClose(dog ?? [], [16 / 3, 1, 2 / 3]);
    await embedder.close();
  });

  it('mean pooling ignores padding: a short text batched with a long one gets its own vector', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder({ pooling: 'mean' }));
    const [alone] = await embedder.embed(['dog']);
    const [short, long] = await embedder.embed(['dog', 'i went to the park playing dogs.']);
    assertClose(short ?? [], Array.from(alone ?? []));
    assertClose(long ?? [], expectedMean(embedder.tokenize('i went to the park playing dogs.')));
    await embedder.close();
  });

  it('CLS pooling is the [CLS] row of the table, normalised to unit length', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder({ pooling: 'cls', normalize: true }));
    const vectors = await embedder.embed(['dog', 'the cat', 'i went to the park']);
    const cls = tinyRow(2);
    const norm = Math.hypot(...cls);
    for (const vector of vectors) {
      assertClose(
        vector,
        cls.map((value) => value / norm),
      );
      assert.ok(Math.abs(Math.hypot(...vector) - 1) < 1e-6);
    }
    await embedder.close();
  });

  it('normalisation gives unit length for mean pooling too', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder({ pooling: 'mean', normalize: true }));
    const [vector] = await embedder.embed(['the cats']);
    assertClose(vector ?? [], expectedMean([2, id('the'), id('cat'), id('##s'), 3], true));
    assert.ok(Math.abs(Math.hypot(...(vector ?? [])) - 1) < 1e-6);
    await embedder.close();
  });

  it('truncates at maxLength, keeping the final [SEP]', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder({ maxLength: 5 }));
    assert.deepEqual(embedder.tokenize('i went to the park'), [2, 4, 5, 6, 3]);
    assert.deepEqual(embedder.tokenize('a dog'), [2, 14, 11, 3]);
    const [vector] = await embedder.embed(['i went to the park']);
    assertClose(vector ?? [], expectedMean([2, 4, 5, 6, 3]));
    await embedder.close();
  });

  it('batches by length and returns vectors in input order', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder(), { batchSize: 2 });
    const texts = [
      'i went to the park playing',
      'dog',
      'the cat went to a park .',
      'a cat',
      '',
      'i play',
      'to',
    ];
    const vectors = await embedder.embed(texts);
    assert.equal(vectors.length, texts.length);
    for (const [index, text] of texts.entries())
      assertClose(vectors[index] ?? [], expectedMean(embedder.tokenize(text)), text);
    await embedder.close();
  });

  it('returns [] for no texts', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder());
    assert.deepEqual(await embedder.embed([]), []);
    await embedder.close();
  });

  it('works without a token_type_ids input', async () => {
    const embedder = await OnnxEmbedder.load(await tinyFolder({ tokenTypeIds: false }));
    const [dog] = await embedder.embed(['dog']);
    assertClose(dog ?? [], expectedMean([2, id('dog'), 3]));
    await embedder.close();
  });

  it('a different export of the same model name has a different id', async () => {
    const a = await OnnxEmbedder.load(await tinyFolder());
    const b = await OnnxEmbedder.load(
      await tinyFolder({ table: tinyVocab.map((_, tokenId) => [tokenId, 2, tokenId % 2]) }),
    );
    assert.notEqual(a.id, b.id);
    await a.close();
    await b.close();
  });
});

describe('OnnxEmbedder load errors', () => {
  async function rejectsWith(folder: string, code: string, mentions: string): Promise<void> {
    await assert.rejects(OnnxEmbedder.load(folder), (error: unknown) => {
      assert.ok(error instanceof LightmemError, String(error));
      assert.equal(error.code, code, error.message);
      assert.ok(error.message.includes(mentions), error.message);
      return true;
    });
  }

  it('a missing folder or file is not_found, naming the file', async () => {
    await rejectsWith(join(tmpdir(), 'lightmem-no-such-model'), 'not_found', manifestFileName);
    const folder = await tinyFolder();
    await rm(join(folder, tokenizerFileName));
    await rejectsWith(folder, 'not_found', tokenizerFileName);
  });

  it('an invalid manifest, a wrong kind or a missing pooling is config_invalid', async () => {
    const folder = await tinyFolder();
    await writeFile(join(folder, manifestFileName), '{ not json');
    await rejectsWith(folder, 'config_invalid', manifestFileName);
    await rejectsWith(await tinyFolder({ manifest: { kind: 'token-classifier' } }), 'config_invalid', 'kind');
    await rejectsWith(await tinyFolder({ manifest: { dims: -1 } }), 'config_invalid', 'dims');
    const noPooling = await tinyFolder();
    const { pooling, ...rest } = JSON.parse(
      await readFile(join(noPooling, manifestFileName), 'utf8'),
    ) as ModelManifest;
    assert.equal(pooling, 'mean');
    await writeFile(join(noPooling, manifestFileName), JSON.stringify(rest));
    await rejectsWith(noPooling, 'config_invalid', 'pooling');
  });

  it('dims that differ from the model output are config_invalid', async () => {
    await rejectsWith(await tinyFolder({ manifest: { dims: 4 } }), 'config_invalid', 'dims 4');
  });

  it('a model.onnx that is not ONNX, or not the one recorded, is config_invalid', async () => {
    const folder = await tinyFolder();
    await writeFile(join(folder, modelFileName), 'not a model');
    await rejectsWith(folder, 'config_invalid', modelFileName);
    const manifest = JSON.parse(await readFile(join(folder, manifestFileName), 'utf8')) as ModelManifest;
    await writeFile(join(folder, manifestFileName), JSON.stringify({ ...manifest, files: {} }));
    await rejectsWith(folder, 'config_invalid', 'not a loadable ONNX model');
  });

  it('a broken tokenizer.json is config_invalid', async () => {
    const folder = await tinyFolder({ manifest: { files: {} } });
    await writeFile(join(folder, tokenizerFileName), '{"version": "1.0"}');
    await rejectsWith(folder, 'config_invalid', tokenizerFileName);
  });
});

describe('OnnxEmbedder on the real bge-small-en-v1.5 (quantized)', { skip: skipBge }, () => {
  let embedder: OnnxEmbedder;
  let folder: string;

  before(async () => {
    folder = await realBgeFolder();
    folders.push(folder);
    embedder = await OnnxEmbedder.load(folder);
  });

  after(async () => {
    await embedder.close();
  });

  it('gives 384-dimensional unit vectors', async () => {
    const [vector] = await embedder.embed(['hello world']);
    assert.equal(embedder.dims, 384);
    assert.equal(vector?.length, 384);
    assert.ok(Math.abs(Math.hypot(...(vector ?? [])) - 1) < 1e-4);
  });

  it('puts paraphrases closer than unrelated sentences', async () => {
    const [puppy, dog, stocks] = await embedder.embed([
      'I adopted a puppy last week',
      'Last week I got a new dog',
      'The stock market fell today',
    ]);
    assert.ok(puppy && dog && stocks);
    assert.ok(dot(puppy, dog) > dot(puppy, stocks) + 0.1, `${dot(puppy, dog)} vs ${dot(puppy, stocks)}`);
  });

  it('truncates long texts at 512 tokens and batches them with short ones', async () => {
    const long = 'memory '.repeat(1000);
    const ids = embedder.tokenize(long);
    assert.equal(ids.length, 512);
    assert.equal(ids.at(-1), 102);
    const [alone] = await embedder.embed(['a short text']);
    const [, short] = await embedder.embed([long, 'a short text']);
    assert.ok(alone && short);
    // Not bit-identical: the quantized model's DynamicQuantizeLinear picks one activation scale per batch
    // tensor, so batch companions move a vector slightly (cosine ≈ 0.997 measured).
    assert.ok(dot(alone, short) > 0.99, String(dot(alone, short)));
  });
});
