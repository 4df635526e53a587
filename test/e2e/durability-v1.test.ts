import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { locomoFile, repoRoot, tempDir } from '../support/cli.js';
import { killAndCompare } from '../support/durability.js';

describe('durability under kill -9, on a version-1 data dir', () => {
  it(
    'ends with exactly the memories of an uninterrupted run after ≥5 SIGKILLs, starting from a data dir written by version 1 (ids with "/", keys joined with "/")',
    { timeout: 240_000 },
    async () => {
      const work = tempDir('v1-input');
      try {
        // A LoCoMo conversation under a tenant whose id has a "/", beside the version-1 fixture's own.
        const samples = (JSON.parse(readFileSync(locomoFile, 'utf8')) as unknown[]).slice(0, 1);
        const file = join(work.path, 'locomo-1.json');
        writeFileSync(file, JSON.stringify(samples));
        await killAndCompare({
          from: join(repoRoot, 'test/fixtures/v1-data-dir'),
          file,
          tenant: 'acme/eu',
          tenants: ['acme/eu', 'acme/x', 'acme'],
        });
      } finally {
        work.remove();
      }
    },
  );
});
