import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InfraError } from './infra-error.js';
import { ensureDirs } from './layout.js';

/** Maven Central, or a mirror (LIGHTMEM_MAVEN_REPO) for machines behind a proxy repository. */
export const mavenRepo = (process.env['LIGHTMEM_MAVEN_REPO'] ?? 'https://repo1.maven.org/maven2').replace(
  /\/$/,
  '',
);

export interface MavenArtifact {
  readonly groupId: string;
  readonly artifactId: string;
  readonly version: string;
  readonly classifier?: string;
  readonly extension: string;
}

export function mavenUrl(artifact: MavenArtifact): string {
  const classifier = artifact.classifier === undefined ? '' : `-${artifact.classifier}`;
  return [
    mavenRepo,
    ...artifact.groupId.split('.'),
    artifact.artifactId,
    artifact.version,
    `${artifact.artifactId}-${artifact.version}${classifier}.${artifact.extension}`,
  ].join('/');
}

async function fileDigest(file: string, algorithm: 'sha1' | 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

async function fetchOk(url: string, what: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(30 * 60_000) });
  } catch (error) {
    throw new InfraError(
      `download of ${what} failed: ${url}: ${error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)}. ` +
        'Is the registry reachable from this machine? A mirror can be set with LIGHTMEM_MAVEN_REPO.',
      { cause: error },
    );
  }
  if (!response.ok || response.body === null) {
    throw new InfraError(
      `download of ${what} failed: ${url}: HTTP ${response.status} ${response.statusText}`,
    );
  }
  return response;
}

/**
 * Downloads a Maven artifact into the cache, verified against the repository's SHA-1 file. A cached file
 * that still matches is reused; a partial download never becomes the cached file.
 */
export async function downloadMaven(artifact: MavenArtifact, downloads: string): Promise<string> {
  const url = mavenUrl(artifact);
  ensureDirs(downloads);
  const target = join(downloads, basename(url));
  const expected =
    (await (await fetchOk(`${url}.sha1`, `${basename(url)}.sha1`)).text()).trim().split(/\s+/)[0] ?? '';
  if (existsSync(target) && (await fileDigest(target, 'sha1')) === expected) return target;
  await downloadTo(url, target, basename(url));
  const actual = await fileDigest(target, 'sha1');
  if (actual !== expected) {
    rmSync(target, { force: true });
    throw new InfraError(`checksum mismatch for ${url}: expected sha1 ${expected}, got ${actual}`);
  }
  return target;
}

/** Streams a URL to a file with a progress line on stderr; the file appears only when complete. */
export async function downloadTo(url: string, target: string, what: string): Promise<void> {
  const response = await fetchOk(url, what);
  const total = Number(response.headers.get('content-length') ?? 0);
  const partial = `${target}.part`;
  let received = 0;
  let lastShown = 0;
  const progress = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      const now = Date.now();
      if (process.stderr.isTTY && now - lastShown > 500) {
        lastShown = now;
        const mb = (received / 1e6).toFixed(1);
        const of =
          total > 0 ? ` of ${(total / 1e6).toFixed(1)} MB (${Math.floor((100 * received) / total)}%)` : ' MB';
        process.stderr.write(`\r  downloading ${what}: ${mb}${of}   `);
      }
      callback(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(response.body as import('node:stream/web').ReadableStream),
      progress,
      createWriteStream(partial),
    );
  } catch (error) {
    rmSync(partial, { force: true });
    throw new InfraError(`download of ${what} was interrupted: ${url}: ${String(error)}`, { cause: error });
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  renameSync(partial, target);
}

export { fileDigest };
