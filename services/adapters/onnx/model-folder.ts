import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { LightmemError, errorMessage } from '../../core/errors.js';
import {
  ModelManifest,
  manifestFileName,
  modelFileName,
  tokenizerFileName,
} from '../../models/model-manifest.js';
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

/** The files of a model folder, read and checked: manifest of the expected kind, tokenizer, model bytes. */
export interface ModelFiles {
  readonly manifest: ModelManifest;
  readonly manifestPath: string;
  readonly tokenizer: HfTokenizer;
  readonly tokenizerText: string;
  readonly tokenizerPath: string;
  readonly modelPath: string;
  readonly modelBytes: Buffer;
  /** Of the model bytes; equal to the manifest's record when it has one. */
  readonly modelSha256: string;
}

/**
 * Reads a model folder: the manifest (of `kind`), `tokenizer.json` and `model.onnx`, whose sha256 must
 * match the one the manifest records. `check` runs on the manifest before the other files are read.
 */
export async function readModelFolder(
  folder: string,
  kind: ModelManifest['kind'],
  check: (manifest: ModelManifest, manifestPath: string) => void = () => undefined,
): Promise<ModelFiles> {
  const manifest = await readManifest(folder, kind);
  const manifestPath = join(folder, manifestFileName);
  check(manifest, manifestPath);
  const tokenizerPath = join(folder, tokenizerFileName);
  const tokenizerText = (await readRequired(tokenizerPath)).toString('utf8');
  const modelPath = join(folder, modelFileName);
  const modelBytes = await readRequired(modelPath);
  const modelSha256 = createHash('sha256').update(modelBytes).digest('hex');
  const recorded = manifest.files[modelFileName];
  if (recorded !== undefined && recorded !== modelSha256)
    throw new LightmemError(
      'config_invalid',
      `${modelPath}: sha256 ${modelSha256} differs from ${recorded} recorded in ${manifestFileName}; fetch or copy the model again`,
    );
  const tokenizer = parseTokenizer(tokenizerText, tokenizerPath);
  return {
    manifest,
    manifestPath,
    tokenizer,
    tokenizerText,
    tokenizerPath,
    modelPath,
    modelBytes,
    modelSha256,
  };
}

/** A positive integer option (`batchSize`, `threads`), or a non-retryable config error naming it. */
export function positiveInteger(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new LightmemError('config_invalid', `${field} must be a positive integer (got ${value})`, {
      field,
    });
  return value;
}

/** An onnxruntime session on `threads` intra-op threads; a model it cannot load is a config error. */
export async function createSession(
  model: Uint8Array,
  modelPath: string,
  threads: number,
  failure = 'not a loadable ONNX model',
): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(model, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
  } catch (error) {
    throw new LightmemError('config_invalid', `${modelPath}: ${failure}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}
