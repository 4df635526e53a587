// Runs a CLI command in this process: what `runCli` does without a child process (tsx start-up and module
// loading once per test file, not once per command). For tests that run a command and read its output;
// kill -9, two processes on one data dir and a server's process lifecycle still need `runCli`/`spawnCli`.
import { Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { format } from 'node:util';
import { main } from '../../services/cli/main.js';
import { repoRoot, type CliResult } from './cli.js';

/** How long a finished command's handles (sockets, files, ref'd timers) may take to close. */
const closeGraceMs = 2_000;

/** A stream that keeps what is written to it, as process.stdout/stderr of a command run here. */
class Captured extends Writable {
  text = '';
  constructor() {
    super({ decodeStrings: false });
  }
  override _write(chunk: string | Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    done();
  }
}

const consoleMethods = ['log', 'info', 'debug', 'error', 'warn'] as const;

let queue: Promise<unknown> = Promise.resolve();

/**
 * `lightmem <args>` in this process, with the environment of `runCli` (LIGHTMEM_EMBEDDER=none unless
 * `env` says otherwise) applied to process.env and the working directory at the repository root for the
 * run. process.stdout/stderr and console are swapped for capturing ones (the test runner's own output
 * keeps the real streams); the code is what main returns, or 1 with the error's stack on stderr when it
 * throws (as bin/lightmem.js). Fails when the command leaves handles open: a process would hang on them.
 * Runs one at a time (they swap globals).
 */
export function runCliInProcess(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const run = queue.then(() => runNow(args, env));
  queue = run.catch(() => undefined);
  return run;
}

async function runNow(args: readonly string[], env: Record<string, string>): Promise<CliResult> {
  const stdout = new Captured();
  const stderr = new Captured();
  const overrides: Record<string, string> = { LIGHTMEM_EMBEDDER: 'none', ...env };
  const savedEnv = new Map(Object.keys(overrides).map((name) => [name, process.env[name]]));
  const savedStreams = {
    stdout: Object.getOwnPropertyDescriptor(process, 'stdout'),
    stderr: Object.getOwnPropertyDescriptor(process, 'stderr'),
  };
  const savedConsole = consoleMethods.map(
    (name) => [name, Object.getOwnPropertyDescriptor(console, name)] as const,
  );
  const savedCwd = process.cwd();
  // The real stdio streams open on first use (importing node:process reads them all): open them now, so
  // that they do not count as the command's handles.
  for (const stream of [process.stdin, process.stdout, process.stderr]) stream.listenerCount('error');
  const before = { resources: process.getActiveResourcesInfo(), handles: new Set(activeHandles()) };

  Object.assign(process.env, overrides);
  Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => stdout });
  Object.defineProperty(process, 'stderr', { configurable: true, enumerable: true, get: () => stderr });
  for (const name of consoleMethods) {
    const target = name === 'log' || name === 'info' || name === 'debug' ? stdout : stderr;
    console[name] = (...parts: unknown[]) => void target.write(`${format(...parts)}\n`);
  }
  process.chdir(repoRoot);
  let code: number;
  try {
    code = await main(args);
  } catch (error) {
    stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    code = 1;
  } finally {
    process.chdir(savedCwd);
    for (const [name, descriptor] of savedConsole)
      if (descriptor !== undefined) Object.defineProperty(console, name, descriptor);
    for (const [name, descriptor] of Object.entries(savedStreams))
      if (descriptor !== undefined) Object.defineProperty(process, name, descriptor);
    for (const [name, value] of savedEnv) {
      if (value === undefined) Reflect.deleteProperty(process.env, name);
      else process.env[name] = value;
    }
  }
  await closed(before, args);
  return { code, signal: null, stdout: stdout.text, stderr: stderr.text };
}

/** Node's list of open handles (sockets, servers, pipes; not timers or requests). */
const activeHandles = (): unknown[] =>
  (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();

/**
 * Waits for the handles the command opened to close; fails, naming them, if they outlive the grace time.
 * Not counted: this process's side of connections to servers that were open before the command (a test's
 * fake LLM endpoint keeps its side of a keep-alive connection until the client's idle socket times out,
 * an unreferenced socket that does not keep a process alive).
 */
async function closed(
  before: { resources: readonly string[]; handles: ReadonlySet<unknown> },
  args: readonly string[],
): Promise<void> {
  const deadline = Date.now() + closeGraceMs;
  for (;;) {
    const left = [...process.getActiveResourcesInfo()];
    const excused = activeHandles()
      .filter((handle) => before.handles.has((handle as { server?: unknown }).server))
      .map(() => 'TCPSocketWrap');
    for (const name of [...before.resources, ...excused]) {
      const at = left.indexOf(name);
      if (at >= 0) left.splice(at, 1);
    }
    if (left.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(`lightmem ${args.join(' ')} left handles open after it returned: ${left.join(', ')}`);
    await nextTurn();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
