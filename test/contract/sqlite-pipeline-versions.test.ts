import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqlitePipelineVersions } from '../../services/adapters/sqlite/sqlite-pipeline-versions.js';
import type { PipelineVersions } from '../../services/core/ports/pipeline-versions.js';
import { pipelineVersionsContract } from './pipeline-versions.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-versions-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const paths = new WeakMap<PipelineVersions, string>();

pipelineVersionsContract('SqlitePipelineVersions', {
  open: () => {
    const file = join(dir, `versions-${++files}.db`);
    const versions = SqlitePipelineVersions.open(file, { busyTimeoutMs: 2_000 });
    paths.set(versions, file);
    return Promise.resolve(versions);
  },
  sibling: (versions) => {
    const file = paths.get(versions) ?? '';
    return Promise.resolve(SqlitePipelineVersions.open(file, { busyTimeoutMs: 2_000 }));
  },
});

describe('SqlitePipelineVersions', () => {
  it('versions and routes survive close and reopen', async () => {
    const file = join(dir, 'restart.db');
    let versions = SqlitePipelineVersions.open(file);
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

    versions = SqlitePipelineVersions.open(file);
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
});
