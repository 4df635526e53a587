// Starting and stopping the consolidation worker of `consolidation-worker-process.ts` in child processes.
import { spawn, type ChildProcess } from 'node:child_process';
import type { WorkerProcessOptions } from './consolidation-worker-process.js';

const script = new URL('./consolidation-worker-process.ts', import.meta.url).pathname;

export interface WorkerProcess {
  readonly identity: string;
  readonly child: ChildProcess;
  /** Resolves once the process has exited (however). */
  readonly exited: Promise<void>;
  /** SIGKILL: no shutdown, no cleanup, in-flight activities left to their heartbeat timeout. */
  kill(): Promise<void>;
  /** SIGTERM (graceful shutdown), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts a worker process and resolves once it polls its task queue (`ready` on its stdout); rejects if it
 * exits first or is not ready within `readyTimeoutMs`. Every process started is added to `started`, so a
 * test can stop them all whatever happened.
 */
export function startWorkerProcess(
  options: WorkerProcessOptions,
  started: WorkerProcess[],
  readyTimeoutMs = 60_000,
): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const handle: WorkerProcess = {
    identity: options.identity,
    child,
    exited,
    kill: async () => {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
    stop: async (graceMs = 15_000) => {
      if (!alive()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  started.push(handle);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      reject(new Error(`worker ${options.identity} not ready after ${readyTimeoutMs} ms`));
    }, readyTimeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (out.includes('ready\n')) {
        clearTimeout(timer);
        resolve(handle);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`worker ${options.identity} exited before it was ready (${code ?? signal})`));
    });
  });
}
