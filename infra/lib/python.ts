import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDirs, type InfraLayout } from './layout.js';
import { runChecked } from './processes.js';

/** pip, quiet and non-interactive, with its HTTP cache in the infra cache. */
export function pipEnv(layout: InfraLayout): Record<string, string> {
  return {
    PIP_CACHE_DIR: join(layout.downloads, 'pip-cache'),
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
    PIP_NO_INPUT: '1',
  };
}

/** Runs `build` into `${dir}.partial` and renames it to `dir` when it succeeded: `dir` is always complete. */
export function once(dir: string, build: (partial: string) => void): void {
  if (existsSync(dir)) return;
  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  ensureDirs(partial);
  build(partial);
  renameSync(partial, dir);
}

/**
 * Installs a requirement into a venv from a downloaded wheelhouse only (no index), with the versions its
 * `constraints.txt` pins: the same packages on every machine, whatever PyPI serves that day.
 */
export function installFromWheelhouse(
  python: string,
  wheelhouse: string,
  requirement: string,
  what: string,
  env: Record<string, string>,
): void {
  runChecked(
    python,
    [
      '-m',
      'pip',
      'install',
      '--no-index',
      '--find-links',
      wheelhouse,
      '-c',
      join(wheelhouse, 'constraints.txt'),
      requirement,
    ],
    `installing ${what} into its venv`,
    { env },
  );
}
