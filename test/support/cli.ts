import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const repoRoot = new URL('../../', import.meta.url).pathname;
/** The benchmark data: `shared/data` beside the repository (as in CI), or LIGHTMEM_SHARED_DATA. */
export const sharedData = process.env['LIGHTMEM_SHARED_DATA'] ?? join(repoRoot, '..', 'shared', 'data');
export const locomoFile = join(sharedData, 'locomo-dev.json');

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Starts the CLI from source in a child process (as a user would run `lightmem …`). For tests that need a
 * real process (kill -9, two processes on one data dir, a server's lifecycle); a test that only runs a
 * command and reads its output uses runCliInProcess (in-process-cli.ts), without the start-up cost.
 */
export function spawnCli(args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/dev-cli.ts'), ...args], {
    cwd: repoRoot,
    // No model downloads in tests: the default embedder is off unless a test turns it on.
    env: { ...process.env, LIGHTMEM_EMBEDDER: 'none', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function collect(child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return collect(spawnCli(args, env));
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `lightmem-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** `lightmem serve --port 0` on a data dir; resolves with its base URL (and the data dir's first API key) once it listens. */
export async function startServer(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<{ base: string; apiKey: string; child: ChildProcess; stop(): Promise<void> }> {
  const child = spawnCli(['serve', '--port', '0', '--data-dir', dataDir], env);
  const base = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${buffered}`)), 30_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)"/.exec(buffered);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', () => reject(new Error(`server exited:\n${buffered}`)));
  });
  return {
    base,
    // The first start of a data dir writes its admin key there (see serve-command.ts).
    apiKey: readFileSync(join(dataDir, 'api-key'), 'utf8').trim(),
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The last line of a successful `--json` run, parsed (fails the test with stderr when the run failed). */
export function lastJsonLine(result: CliResult): unknown {
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}');
}
