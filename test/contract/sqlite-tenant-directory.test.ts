import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteTenantDirectory } from '../../services/adapters/sqlite/sqlite-tenant-directory.js';
import { hashSecret, parseApiKey } from '../../services/core/api-keys.js';
import type { TenantDirectory } from '../../services/core/ports/tenant-directory.js';
import { tenantDirectoryContract } from './tenant-directory.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-tenants-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const paths = new WeakMap<TenantDirectory, string>();

tenantDirectoryContract('SqliteTenantDirectory', {
  open: (clock) => {
    const file = join(dir, `tenants-${++files}.db`);
    const directory = SqliteTenantDirectory.open(file, { clock });
    paths.set(directory, file);
    return Promise.resolve(directory);
  },
  sibling: (directory, clock) => {
    const file = paths.get(directory) ?? '';
    return Promise.resolve(SqliteTenantDirectory.open(file, { clock }));
  },
});

/** Every byte SQLite wrote for a database: the file, its WAL and its rollback journal. */
function rawBytes(file: string): Buffer {
  return Buffer.concat(
    [file, `${file}-wal`, `${file}-journal`].filter((f) => existsSync(f)).map((f) => readFileSync(f)),
  );
}

describe('SqliteTenantDirectory', () => {
  it('writes no secret to disk: the file and its WAL hold the hash only', async () => {
    const file = join(dir, 'raw.db');
    const directory = SqliteTenantDirectory.open(file);
    let apiKey: string;
    try {
      await directory.createTenant('brand-a');
      ({ apiKey } = await directory.createKey({ tenantId: 'brand-a', scopes: ['read'] }));
      const { secret } = parseApiKey(apiKey)!;
      // While open (the row is in the WAL) and after close (checkpointed into the file).
      const open = rawBytes(file);
      assert.ok(open.includes(hashSecret(secret)), 'the hash is stored (the scan reads the right bytes)');
      assert.ok(!open.includes(secret) && !open.includes(apiKey));
    } finally {
      await directory.close();
    }
    const { secret } = parseApiKey(apiKey)!;
    const closed = rawBytes(file);
    assert.ok(closed.includes(hashSecret(secret)));
    assert.ok(!closed.includes(secret) && !closed.includes(apiKey));
  });

  it('keys survive a restart; an in-memory directory works for tests', async () => {
    const file = join(dir, 'restart.db');
    let directory = SqliteTenantDirectory.open(file);
    await directory.createTenant('brand-a');
    const { apiKey } = await directory.createKey({ tenantId: 'brand-a', scopes: ['admin'] });
    await directory.close();
    directory = SqliteTenantDirectory.open(file);
    try {
      assert.equal((await directory.authenticate(apiKey))?.tenantId, 'brand-a');
    } finally {
      await directory.close();
    }

    const memory = SqliteTenantDirectory.open(':memory:');
    try {
      await memory.createTenant('local');
      const key = await memory.createKey({ tenantId: 'local', scopes: ['read'] });
      assert.equal((await memory.authenticate(key.apiKey))?.keyId, key.key.keyId);
    } finally {
      await memory.close();
    }
  });
});
