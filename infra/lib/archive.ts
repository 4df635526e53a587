import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { runChecked } from './processes.js';
import { ensureDirs } from './layout.js';

/**
 * Unpacks an archive (zip or tar.gz) into `target` once: into a temporary folder first, renamed when
 * complete, so an interrupted unpack is never mistaken for an install.
 */
export function unpackOnce(archive: string, target: string, what: string): void {
  if (existsSync(`${target}/.complete`)) return;
  const partial = `${target}.partial`;
  rmSync(partial, { recursive: true, force: true });
  ensureDirs(partial);
  if (archive.endsWith('.zip'))
    runChecked('unzip', ['-q', archive, '-d', partial], `unpacking ${what} (is unzip installed?)`);
  else runChecked('tar', ['-xzf', archive, '-C', partial], `unpacking ${what}`);
  writeFileSync(`${partial}/.complete`, `${new Date().toISOString()}\n`);
  rmSync(target, { recursive: true, force: true });
  renameSync(partial, target);
}
