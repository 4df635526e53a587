import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LightmemError, errorMessage } from '../../core/errors.js';
import { ModelManifest, manifestFileName } from '../../models/model-manifest.js';
import { createTokenizer, type HfTokenizer } from './hf-tokenizer.js';

/** Reading a model folder (`lightmem models fetch` layout): files, manifest, tokenizer, with typed errors. */

export async function readRequired(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new LightmemError('not_found', `${path} is missing; run \`lightmem models fetch\``, {
        cause: error,
      });
    throw new LightmemError('config_invalid', `${path}: cannot read: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

export async function readManifest(folder: string, kind: ModelManifest['kind']): Promise<ModelManifest> {
  const path = join(folder, manifestFileName);
  const text = (await readRequired(path)).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new LightmemError('config_invalid', `${path}: not JSON: ${errorMessage(error)}`, { cause: error });
  }
  const parsed = ModelManifest.safeParse(json);
  if (!parsed.success)
    throw new LightmemError(
      'config_invalid',
      `${path}: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`,
      { cause: parsed.error },
    );
  const manifest = parsed.data;
  if (manifest.kind !== kind)
    throw new LightmemError('config_invalid', `${path}: kind is ${manifest.kind}, expected ${kind}`, {
      field: 'kind',
    });
  if (kind === 'embedder' && manifest.pooling === undefined)
    throw new LightmemError('config_invalid', `${path}: an embedder needs pooling (cls or mean)`, {
      field: 'pooling',
    });
  return manifest;
}

export function parseTokenizer(text: string, path: string): HfTokenizer {
  try {
    const json = JSON.parse(text) as unknown;
    if (typeof json !== 'object' || json === null || !('model' in json))
      throw new Error('no "model" section');
    return createTokenizer(json);
  } catch (error) {
    throw new LightmemError(
      'config_invalid',
      `${path}: not a usable tokenizer.json: ${errorMessage(error)}`,
      {
        cause: error,
      },
    );
  }
}
