import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { OnnxEmbedder } from '../../services/adapters/onnx/onnx-embedder.js';
import { fileSha256 } from '../../services/adapters/onnx/model-folder.js';
import { optimizedModelPath } from '../../services/adapters/onnx/optimized-model.js';
import { modelFileName } from '../../services/models/model-manifest.js';
import { writeTinyEmbedderFolder } from '../support/tiny-onnx.js';

const folders: string[] = [];
after(async () => {
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

async function embedOnce(folder: string, texts: readonly string[]): Promise<number[][]> {
  const embedder = await OnnxEmbedder.load(folder, { threads: 1 });
  try {
    return (await embedder.embed(texts)).map((vector) => Array.from(vector));
  } finally {
    await embedder.close();
  }
}

async function optimizedFiles(folder: string): Promise<string[]> {
  return (await readdir(folder)).filter((name) => name.startsWith('.lightmem-optimized-'));
}

describe('optimized graph saved beside the model', () => {
  const texts = ['hello world', 'the cat sat'];

  it('is written by the first load and reused by the next, with the same vectors', async () => {
    const folder = await writeTinyEmbedderFolder();
    folders.push(folder);
    assert.deepEqual(await optimizedFiles(folder), []);
    const first = await embedOnce(folder, texts);
    const saved = optimizedModelPath(
      join(folder, modelFileName),
      await fileSha256(join(folder, modelFileName)),
    );
    assert.deepEqual(await optimizedFiles(folder), [saved.slice(folder.length + 1)]);
    const written = await stat(saved);
    const second = await embedOnce(folder, texts);
    assert.deepEqual(second, first);
    const after = await stat(saved);
    assert.equal(
      after.mtimeMs,
      written.mtimeMs,
      'the second load read the saved graph, it did not rewrite it',
    );
    assert.equal(after.ino, written.ino);
  });

  it('still loads when the optimized graph cannot be saved (its place is taken), leaving no temporary file', async () => {
    const folder = await writeTinyEmbedderFolder();
    folders.push(folder);
    const saved = optimizedModelPath(
      join(folder, modelFileName),
      await fileSha256(join(folder, modelFileName)),
    );
    await mkdir(join(saved, 'occupied'), { recursive: true });
    const vectors = await embedOnce(folder, texts);
    assert.equal(vectors.length, 2);
    assert.ok((await stat(saved)).isDirectory());
    assert.deepEqual(
      (await readdir(folder)).filter((name) => name.endsWith('.tmp')),
      [],
    );
  });

  it('replaces a saved graph that does not load, and removes those of other model versions', async () => {
    const folder = await writeTinyEmbedderFolder();
    folders.push(folder);
    const reference = await embedOnce(folder, texts);
    const saved = optimizedModelPath(
      join(folder, modelFileName),
      await fileSha256(join(folder, modelFileName)),
    );
    const good = (await stat(saved)).size;
    await writeFile(saved, 'half a file'); // a writer that crashed, or a disk that filled
    const stale = join(folder, '.lightmem-optimized-model-0000000000000000-ort0.0.0.onnx');
    await writeFile(stale, 'an older version');
    assert.deepEqual(await embedOnce(folder, texts), reference);
    assert.equal((await stat(saved)).size, good, 'optimized again and saved whole');
    assert.deepEqual(await optimizedFiles(folder), [saved.slice(folder.length + 1)]);
    assert.deepEqual(
      (await readdir(folder)).filter((name) => name.endsWith('.tmp')),
      [],
      'no temporary file left',
    );
  });
});
