import { existsSync } from 'node:fs';
import { mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  manifestFileName,
  modelFileName,
  tokenizerFileName,
  type ModelManifest,
} from '../../services/models/model-manifest.js';

/** The quantized bge-small from the Maven jar, when a developer unpacked it in /tmp/models (tests skip otherwise). */
export const bgeModel = process.env['LIGHTMEM_TEST_BGE_ONNX'] ?? '/tmp/models/bge-small-en-v1.5-q.onnx';
export const bgeTokenizer =
  process.env['LIGHTMEM_TEST_BGE_TOKENIZER'] ?? '/tmp/models/bge-small-en-v1.5-q-tokenizer.json';
export const haveBge = existsSync(bgeModel) && existsSync(bgeTokenizer);
export const skipBge: string | false = haveBge ? false : `no ${bgeModel}`;

/** A model folder (links + manifest) around the real bge files. */
export async function realBgeFolder(): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'lightmem-bge-'));
  await symlink(bgeModel, join(folder, modelFileName));
  await symlink(bgeTokenizer, join(folder, tokenizerFileName));
  const manifest: ModelManifest = {
    name: 'bge-small-en-v1.5',
    kind: 'embedder',
    source: 'local',
    origin: bgeModel,
    pooling: 'cls',
    normalize: true,
    dims: 384,
    maxLength: 512,
    files: {},
    fetchedAt: new Date(0).toISOString(),
  };
  await writeFile(join(folder, manifestFileName), JSON.stringify(manifest));
  return folder;
}
