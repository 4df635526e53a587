import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ElasticsearchPipelineVersions } from '../../services/adapters/elasticsearch/es-pipeline-versions.js';
import type { PipelineVersions } from '../../services/core/ports/pipeline-versions.js';
import { pipelineVersionsContract } from '../contract/pipeline-versions.contract.js';
import { deletePrefix, esUrl, freshPrefix, rawClient } from './support/elasticsearch.js';

const prefixes: string[] = [];
const prefixOf = new WeakMap<PipelineVersions, string>();
after(async () => {
  const client = rawClient();
  try {
    for (const prefix of prefixes) await deletePrefix(client, prefix);
  } finally {
    await client.close();
  }
});

async function open(prefix: string): Promise<ElasticsearchPipelineVersions> {
  const versions = await ElasticsearchPipelineVersions.open({ node: esUrl, indexPrefix: prefix });
  prefixOf.set(versions, prefix);
  return versions;
}

function newPrefix(): string {
  const prefix = freshPrefix('versions');
  prefixes.push(prefix);
  return prefix;
}

pipelineVersionsContract('ElasticsearchPipelineVersions (real Elasticsearch)', {
  open: () => open(newPrefix()),
  sibling: (versions) => open(prefixOf.get(versions) ?? ''),
});

describe('ElasticsearchPipelineVersions', () => {
  it('two replicas racing five creates get five distinct consecutive numbers', async () => {
    const prefix = newPrefix();
    const first = await open(prefix);
    const second = await open(prefix);
    try {
      const generation = await first.generation();
      const created = await Promise.all(
        [first, second, first, second, first].map((versions, i) =>
          versions.create({ tenants: i % 2 === 0 ? null : [`t${i}`], config: `{"n":${i}}`, createdAt: i }),
        ),
      );
      const numbers = created.map((v) => v.number).sort((a, b) => a - b);
      assert.deepEqual(numbers, [2, 3, 4, 5, 6]);
      const listed = await second.list();
      assert.deepEqual(
        listed.map((v) => v.number),
        [1, 2, 3, 4, 5, 6],
      );
      for (const version of created) assert.deepEqual(await first.get(version.name), version);
      assert.equal(await second.generation(), generation + 5, 'no create was lost');
    } finally {
      await second.close();
      await first.close();
    }
  });

  it('versions and routes survive close and reopen', async () => {
    const prefix = newPrefix();
    let versions = await open(prefix);
    const v2 = await versions.create({ tenants: ['b', 'a'], config: '{"model":"m2"}', createdAt: 1 });
    await versions.advance(v2.name, 42);
    await versions.markBuilt(v2.name, 2);
    const v3 = await versions.create({ tenants: null, config: '{"model":"m3"}', createdAt: 3 });
    await versions.markBuilt(v3.name, 4);
    await versions.switchTo(v3.name, null);
    await versions.switchTo(v2.name, ['a']);
    await versions.drop('v1', 5);
    const listed = await versions.list();
    const routes = await versions.routes();
    const generation = await versions.generation();
    await versions.close();

    versions = await open(prefix);
    try {
      assert.deepEqual(await versions.list(), listed);
      assert.deepEqual(await versions.routes(), routes);
      assert.deepEqual(routes, { all: 'v3', tenants: { a: 'v2' } });
      assert.equal(await versions.generation(), generation);
      assert.deepEqual(await versions.get('v2'), { ...v2, copied: 42, builtAt: 2 });
      assert.equal((await versions.get('v1'))?.droppedAt, 5);
      assert.equal((await versions.create({ tenants: null, config: '{}', createdAt: 6 })).name, 'v4');
    } finally {
      await versions.close();
    }
  });

  it('keeps the registry in one document of <prefix>pipeline-versions; a corrupt one is storage_corrupt', async () => {
    const prefix = newPrefix();
    const versions = await open(prefix);
    const client = rawClient();
    try {
      assert.deepEqual(Object.keys(await client.indices.get({ index: `${prefix}*` })), [
        `${prefix}pipeline-versions-v1`,
      ]);
      await client.index({
        index: `${prefix}pipeline-versions`,
        id: 'registry',
        document: { generation: 1, versions: [], routes: { all: 1, tenants: [] } },
      });
      await assert.rejects(versions.list(), (error: unknown) => {
        assert.ok(error instanceof Error && 'code' in error);
        assert.equal(error.code, 'storage_corrupt');
        assert.equal((error as { retryable?: boolean }).retryable, false);
        return true;
      });
    } finally {
      await client.close();
      await versions.close();
    }
  });

  it('an unreachable Elasticsearch is a retryable storage_unavailable', async () => {
    await assert.rejects(
      ElasticsearchPipelineVersions.open({
        node: 'http://127.0.0.1:1',
        indexPrefix: newPrefix(),
        requestTimeoutMs: 2_000,
      }),
      (error: unknown) => {
        assert.ok(error instanceof Error && 'code' in error);
        assert.equal(error.code, 'storage_unavailable');
        assert.equal((error as { retryable?: boolean }).retryable, true);
        return true;
      },
    );
  });
});
