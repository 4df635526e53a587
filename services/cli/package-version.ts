import { existsSync, readFileSync } from 'node:fs';

/** This package's version (package.json beside services/ and dist/), 0.0.0 when it cannot be read. */
export function packageVersion(): string {
  const file = new URL('../../package.json', import.meta.url);
  if (!existsSync(file)) return '0.0.0';
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown };
  return typeof parsed.version === 'string' ? parsed.version : '0.0.0';
}
