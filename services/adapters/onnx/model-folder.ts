import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
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

/** The files of a model folder, read and checked: manifest of the expected kind, tokenizer, model path. */
export interface ModelFiles {
  readonly manifest: ModelManifest;
  readonly manifestPath: string;
  readonly tokenizer: HfTokenizer;
  readonly tokenizerText: string;
  readonly tokenizerPath: string;
  /** `model.onnx`: sessions are created from the path (onnxruntime reads it); not read here. */
  readonly modelPath: string;
  /** Of the model bytes; equal to the manifest's record when it has one. */
  readonly modelSha256: string;
}

/**
 * Reads a model folder: the manifest (of `kind`), `tokenizer.json`, and the sha256 of `model.onnx`, which
 * must match the one the manifest records (hashed once per version of the file: see `fileSha256`).
 * `check` runs on the manifest before the other files are read.
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
  const modelSha256 = await fileSha256(modelPath);
  const recorded = manifest.files[modelFileName];
  if (recorded !== undefined && recorded !== modelSha256)
    throw new LightmemError(
      'config_invalid',
      `${modelPath}: sha256 ${modelSha256} differs from ${recorded} recorded in ${manifestFileName}; fetch or copy the model again`,
    );
  // The embedder and its attention read one folder: the tokenizer is parsed once per text.
  const parsed = tokenizers.get(tokenizerPath);
  const tokenizer =
    parsed !== undefined && parsed.text === tokenizerText
      ? parsed.tokenizer
      : parseTokenizer(tokenizerText, tokenizerPath);
  tokenizers.set(tokenizerPath, { text: tokenizerText, tokenizer });
  return { manifest, manifestPath, tokenizer, tokenizerText, tokenizerPath, modelPath, modelSha256 };
}

/** Parsed tokenizers of this process by path, with the text they were parsed from. */
const tokenizers = new Map<string, { text: string; tokenizer: HfTokenizer }>();

/** Where the hashes of a model folder's files are kept between runs (next to them, best effort). */
export const hashCacheFileName = '.lightmem-sha256.json';

interface HashedFile {
  readonly size: string;
  readonly mtimeNs: string;
  readonly ino: string;
  readonly sha256: string;
  /** What else was derived from this version of the file (e.g. the attention layers of a graph). */
  readonly derived?: Record<string, unknown>;
}

type HashCache = Record<string, HashedFile>;

/** In this process: path → the file version last hashed (embedder and attention share one model file). */
const hashed = new Map<string, HashedFile>();

/**
 * The sha256 of a file, computed once per version of it: kept in memory and in `.lightmem-sha256.json`
 * beside it, keyed by size, mtime (ns) and inode, so a replaced or rewritten file is hashed again. A
 * start-up of the CLI then neither reads nor hashes the model (34 MB) to check it. Missing file: not_found.
 */
export async function fileSha256(path: string): Promise<string> {
  return (await hashedFile(path)).sha256;
}

/**
 * A value derived from a version of a file (computing it once, e.g. parsing an ONNX graph), cached with
 * its hash: recomputed when the file changes. Best effort: an unwritable folder only costs the recompute.
 */
export async function derivedOf<T>(path: string, name: string, compute: () => Promise<T>): Promise<T> {
  const file = await hashedFile(path);
  if (file.derived !== undefined && name in file.derived) return file.derived[name] as T;
  const value = await compute();
  const updated: HashedFile = { ...file, derived: { ...file.derived, [name]: value } };
  hashed.set(path, updated);
  await saveHashCache(path, updated);
  return value;
}

async function hashedFile(path: string): Promise<HashedFile> {
  let info;
  try {
    info = await stat(path, { bigint: true });
  } catch (error) {
    await readRequired(path); // the typed error (not_found naming the file, or unreadable)
    throw error;
  }
  const key = { size: String(info.size), mtimeNs: String(info.mtimeNs), ino: String(info.ino) };
  const same = (entry: HashedFile | undefined): entry is HashedFile =>
    entry !== undefined && entry.size === key.size && entry.mtimeNs === key.mtimeNs && entry.ino === key.ino;
  const inMemory = hashed.get(path);
  if (same(inMemory)) return inMemory;
  const onDisk = (await loadHashCache(path))[basename(path)];
  if (same(onDisk)) {
    hashed.set(path, onDisk);
    return onDisk;
  }
  const entry: HashedFile = { ...key, sha256: await hashStream(path) };
  hashed.set(path, entry);
  await saveHashCache(path, entry);
  return entry;
}

async function hashStream(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (error) {
    await readRequired(path);
    throw error;
  }
  return hash.digest('hex');
}

async function loadHashCache(path: string): Promise<HashCache> {
  try {
    const json: unknown = JSON.parse(await readFile(join(dirname(path), hashCacheFileName), 'utf8'));
    return typeof json === 'object' && json !== null ? (json as HashCache) : {};
  } catch {
    return {};
  }
}

async function saveHashCache(path: string, entry: HashedFile): Promise<void> {
  try {
    const cache = await loadHashCache(path);
    cache[basename(path)] = entry;
    // Written aside and renamed: a process reading it never sees half a file.
    const target = join(dirname(path), hashCacheFileName);
    const temporary = `${target}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify(cache)}\n`);
    await rename(temporary, target);
  } catch {
    // A read-only models folder: the hash is recomputed by the next process.
  }
}

/** A positive integer option (`batchSize`, `threads`), or a non-retryable config error naming it. */
export function positiveInteger(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new LightmemError('config_invalid', `${field} must be a positive integer (got ${value})`, {
      field,
    });
  return value;
}

/** The session options every model runs with: `threads` intra-op threads, graph optimization `level`. */
export function sessionOptions(
  threads: number,
  level: ort.InferenceSession.SessionOptions['graphOptimizationLevel'] = 'all',
): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: level,
  };
}

/** An onnxruntime session on `threads` intra-op threads; a model it cannot load is a config error. */
export async function createSession(
  /** The model's bytes, or its path (onnxruntime then reads the file itself). */
  model: Uint8Array | string,
  modelPath: string,
  threads: number,
  failure = 'not a loadable ONNX model',
  options: ort.InferenceSession.SessionOptions = sessionOptions(threads),
): Promise<ort.InferenceSession> {
  try {
    return typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  } catch (error) {
    throw new LightmemError('config_invalid', `${modelPath}: ${failure}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}
