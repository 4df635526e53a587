import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnCli } from '../../support/cli.js';

export interface RunningServer {
  readonly base: string;
  /** POST a JSON body; resolves with the parsed answer (throws on a non-2xx status). */
  post<T>(path: string, body: unknown): Promise<T>;
  stop(): Promise<void>;
}

/**
 * `lightmem serve --port 0` on a data dir with extra environment (and arguments, e.g. `--config`); resolves
 * once it listens.
 */
export async function serve(
  dataDir: string,
  env: Record<string, string>,
  startTimeoutMs = 120_000,
  stopTimeoutMs = 60_000,
  args: readonly string[] = [],
): Promise<RunningServer> {
  const child = spawnCli(['serve', '--port', '0', '--data-dir', dataDir, ...args], env);
  let output = '';
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`lightmem serve did not start in ${startTimeoutMs} ms:\n${output}`));
    }, startTimeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)"/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`lightmem serve exited (${code}):\n${output}`));
    });
  });
  // The first start of a data dir writes its admin key there (see serve-command.ts), unless tenants existed.
  const keyFile = join(dataDir, 'api-key');
  const apiKey = existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : '';
  return {
    base,
    post: async <T>(path: string, body: unknown): Promise<T> => {
      const response = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
        body: JSON.stringify(body),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${text}`);
      return JSON.parse(text) as T;
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      // Bounded: a server that does not stop on SIGTERM is killed, and the test fails saying so.
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, stopTimeoutMs);
      await exited;
      clearTimeout(timer);
      if (killed)
        throw new Error(
          `lightmem serve did not stop within ${stopTimeoutMs} ms of SIGTERM:\n${output.slice(-5_000)}`,
        );
    },
  };
}
