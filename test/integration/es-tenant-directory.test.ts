import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ElasticsearchTenantDirectory } from '../../services/adapters/elasticsearch/es-tenant-directory.js';
import { hashSecret, parseApiKey } from '../../services/core/api-keys.js';
import type { Clock } from '../../services/core/ports/clock.js';
import type { TenantDirectory } from '../../services/core/ports/tenant-directory.js';
import { tenantDirectoryContract } from '../contract/tenant-directory.contract.js';
import { deletePrefix, esUrl, freshPrefix, rawClient } from './support/elasticsearch.js';

const prefixes: string[] = [];
const prefixOf = new WeakMap<TenantDirectory, string>();
after(async () => {
  const client = rawClient();
  try {
    for (const prefix of prefixes) await deletePrefix(client, prefix);
  } finally {
    await client.close();
  }
});

async function open(prefix: string, clock?: Clock): Promise<ElasticsearchTenantDirectory> {
  const directory = await ElasticsearchTenantDirectory.open({ node: esUrl, indexPrefix: prefix, clock });
  prefixOf.set(directory, prefix);
  return directory;
}

function newPrefix(): string {
  const prefix = freshPrefix('tenants');
  prefixes.push(prefix);
  return prefix;
}

tenantDirectoryContract('ElasticsearchTenantDirectory', {
  open: (clock) => open(newPrefix(), clock),
  sibling: (directory, clock) => open(prefixOf.get(directory) ?? '', clock),
});

describe('ElasticsearchTenantDirectory', () => {
  it('keeps one index, <prefix>tenants-v1, whose documents hold the hash of a secret and never the secret', async () => {
    const prefix = newPrefix();
    const directory = await open(prefix);
    const client = rawClient();
    try {
      await directory.createTenant('brand-a');
      const { apiKey, key } = await directory.createKey({ tenantId: 'brand-a', scopes: ['read'] });
      const { secret } = parseApiKey(apiKey)!;
      const doc = await client.get({ index: `${prefix}tenants-v1`, id: `key:${key.keyId}` });
      const source = JSON.stringify(doc._source);
      assert.ok(source.includes(hashSecret(secret)));
      assert.ok(!source.includes(secret) && !source.includes(apiKey));
      assert.deepEqual(Object.keys(await client.indices.get({ index: `${prefix}*` })), [
        `${prefix}tenants-v1`,
      ]);
    } finally {
      await client.close();
      await directory.close();
    }
  });

  it('two replicas revoking one key at once: both succeed, one revocation time is kept', async () => {
    const prefix = newPrefix();
    const first = await open(prefix, { now: () => 1_000 });
    const second = await open(prefix, { now: () => 2_000 });
    try {
      await first.createTenant('brand-a');
      const { apiKey, key } = await first.createKey({ tenantId: 'brand-a', scopes: ['write'] });
      const [a, b] = await Promise.all([first.revokeKey(key.keyId), second.revokeKey(key.keyId)]);
      const kept = (await first.keys())[0]?.revokedAt;
      assert.ok(kept === 1_000 || kept === 2_000);
      assert.ok(a.revokedAt !== null && b.revokedAt !== null);
      assert.equal(await second.authenticate(apiKey), null);
      assert.equal(await first.authenticate(apiKey), null);
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('fails with a retryable error, not a refusal, when Elasticsearch cannot be reached', async () => {
    const prefix = newPrefix();
    await assert.rejects(
      ElasticsearchTenantDirectory.open({
        node: 'http://127.0.0.1:1',
        indexPrefix: prefix,
        requestTimeoutMs: 2_000,
      }),
      (error: unknown) => error instanceof Error && 'retryable' in error && error.retryable === true,
    );
  });
});
