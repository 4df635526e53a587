import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { InfraError } from './infra-error.js';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid recorded for a server, when that process is still alive. */
export function runningPid(pidFile: string): number | null {
  if (!existsSync(pidFile)) return null;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return null;
  return pid;
}

/** Whether something already listens on 127.0.0.1:port. */
export async function portTaken(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(true));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

/** Who listens on a port, for the error message (best effort: `ss` may be missing or need privileges). */
export function portOwner(port: number): string {
  const result = spawnSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
  if (result.status !== 0 || result.stdout.trim() === '') return 'another process';
  const users = /users:\(\("([^"]+)",pid=(\d+)/.exec(result.stdout);
  return users === null ? 'another process' : `${users[1]} (pid ${users[2]})`;
}

export interface StartCommand {
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

/**
 * Starts a server in the background, detached in its own process group, stdout and stderr appended to
 * its log file, and records its pid.
 */
export function startDetached(start: StartCommand, logFile: string, pidFile: string): number {
  const out = openSync(logFile, 'a');
  try {
    writeFileSync(out, `\n===== ${new Date().toISOString()} ${start.command} ${start.args.join(' ')}\n`);
    const child = spawn(start.command, [...start.args], {
      cwd: start.cwd,
      env: { ...process.env, ...start.env },
      detached: true,
      stdio: ['ignore', out, out],
    });
    if (child.pid === undefined) throw new InfraError(`could not start ${start.command}`);
    child.unref();
    writeFileSync(pidFile, `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(out);
  }
}

/** SIGTERM to the process group, then SIGKILL after the grace period. Resolves when it is gone. */
export async function stopProcess(pid: number, graceMs: number): Promise<'stopped' | 'killed'> {
  const signalGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  };
  signalGroup('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return 'stopped';
    await sleep(100);
  }
  signalGroup('SIGKILL');
  while (isAlive(pid)) await sleep(50);
  return 'killed';
}

export function removeFile(file: string): void {
  rmSync(file, { force: true });
}

/** The last lines of a log file, for an error message. */
export function tail(file: string, lines: number): string {
  if (!existsSync(file)) return '(no log yet)';
  const text = readFileSync(file, 'utf8');
  return text
    .split('\n')
    .slice(-lines - 1)
    .join('\n');
}

/** Runs a command to completion; throws an InfraError with its output when it fails. */
export function runChecked(
  command: string,
  args: readonly string[],
  what: string,
  options: { cwd?: string; env?: Record<string, string> } = {},
): string {
  const result = spawnSync(command, [...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error !== undefined) {
    throw new InfraError(`${what} failed: could not run ${command}: ${result.error.message}`, {
      cause: result.error,
    });
  }
  if (result.status !== 0) {
    const output = `${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-25).join('\n');
    throw new InfraError(`${what} failed (exit ${result.status}): ${command} ${args.join(' ')}\n${output}`);
  }
  return result.stdout;
}
