import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository root (infra/lib/ is two levels down). */
export const repoRoot = resolve(import.meta.dirname, '..', '..');

/**
 * Where the servers live: downloads and installs are cached (a second `infra:up` reuses them), data and
 * logs are per server. Everything is under the ignored `.cache/infra/` unless LIGHTMEM_INFRA_DIR says
 * otherwise; LIGHTMEM_INFRA_CACHE moves only the downloads and installs (one cache for several checkouts).
 */
export interface InfraLayout {
  readonly root: string;
  /** Downloads, installs and the Maven repository: shareable between checkouts (LIGHTMEM_INFRA_CACHE). */
  readonly cache: string;
  /** Downloaded archives and jars, verified against their checksums. */
  readonly downloads: string;
  /** Unpacked installs, one folder per server and version. */
  readonly installs: string;
  server(name: string): ServerPaths;
}

export interface ServerPaths {
  readonly data: string;
  readonly logs: string;
  /** stdout + stderr of the server process. */
  readonly logFile: string;
  readonly pidFile: string;
  /** Generated configuration files. */
  readonly config: string;
}

export function infraLayout(
  root = process.env['LIGHTMEM_INFRA_DIR'] ?? join(repoRoot, '.cache', 'infra'),
  cacheRoot = process.env['LIGHTMEM_INFRA_CACHE'],
): InfraLayout {
  const base = resolve(root);
  const cache = resolve(cacheRoot ?? base);
  return {
    root: base,
    cache,
    downloads: join(cache, 'downloads'),
    installs: join(cache, 'installs'),
    server(name) {
      const home = join(base, 'servers', name);
      return {
        data: join(home, 'data'),
        logs: join(home, 'logs'),
        logFile: join(home, 'logs', `${name}.out.log`),
        pidFile: join(home, `${name}.pid`),
        config: join(home, 'config'),
      };
    },
  };
}

export function ensureDirs(...dirs: string[]): void {
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
}
