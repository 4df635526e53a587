import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDirs, type InfraLayout } from './layout.js';

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
