import { describe, it } from 'node:test';
import { locomoFile } from '../support/cli.js';
import { killAndCompare } from '../support/durability.js';

describe('durability under kill -9', () => {
  it(
    'ends with exactly the memories of an uninterrupted run after ≥5 SIGKILLs mid-ingest',
    { timeout: 240_000 },
    () => killAndCompare({ file: locomoFile, tenants: ['default'] }),
  );
});
