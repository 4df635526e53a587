import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import { diffVersions, matchKey, type VersionDiff } from '../../services/app/version-diff.js';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import type { ListRequest, MemoryStore } from '../../services/core/ports/memory-store.js';
import { DAY, T0, makeEntry, plainWrites, type EntryOverrides } from '../support/memory-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-version-diff-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const now = T0 + 30 * DAY;

const A = 'tenant-a';
const B = 'tenant-b';
const OLD = { extractor: 'extractive-1' };
const NEW = { extractor: 'llm-2', promptHash: 'p2' };

/** An entry of one version: the id hashes the version, as the pipeline's ids do. */
function entry(version: typeof OLD | typeof NEW, fields: EntryOverrides): MemoryEntry {
  const made = makeEntry({ tenantId: A, ...fields, pipeline: version });
  return { ...made, id: `${made.id}-${version.extractor}` };
}

function open(): SqliteMemoryStore {
  return SqliteMemoryStore.open(join(dir, `store-${++files}.db`), { clock: { now: () => now } });
}

/** Two stores: the old version and a replay with a new extractor. */
async function twoVersions(): Promise<{ from: SqliteMemoryStore; to: SqliteMemoryStore }> {
  const from = open();
  const to = open();
  const lives = { sourceTurnIds: ['turn-1'], text: 'Lena lives in Porto.' };
  const prefers = { kind: 'preference' as const, occurredAt: T0 + 1 };
  await from.upsert(
    plainWrites([
      entry(OLD, lives),
      // Two facts from the same turns: one group.
      entry(OLD, { ...prefers, sourceTurnIds: ['turn-2', 'turn-3'], text: 'Lena prefers email.' }),
      entry(OLD, { ...prefers, sourceTurnIds: ['turn-2', 'turn-3'], text: 'Lena dislikes phone calls.' }),
      entry(OLD, { sourceTurnIds: ['turn-4'], text: 'Lena has a dog named Rex.', occurredAt: T0 + 2 }),
      entry(OLD, { sourceTurnIds: ['turn-6'], text: 'Lena is vegetarian.', occurredAt: T0 + 3 }),
      entry(OLD, { sourceTurnIds: ['turn-7'], text: 'Lena works at Acme.', occurredAt: T0 + 4 }),
      entry(OLD, { tenantId: B, sourceTurnIds: ['turn-1'], text: 'Otto lives in Braga.' }),
    ]),
  );
  await to.upsert(
    plainWrites([
      entry(NEW, lives),
      // The same group, listed in another order, with the turn ids in another order.
      entry(NEW, { ...prefers, sourceTurnIds: ['turn-3', 'turn-2'], text: 'Lena dislikes phone calls.' }),
      entry(NEW, { ...prefers, sourceTurnIds: ['turn-3', 'turn-2'], text: 'Lena prefers email.' }),
      entry(NEW, { sourceTurnIds: ['turn-4'], text: 'Lena has a dog called Rex.', occurredAt: T0 + 2 }),
      entry(NEW, {
        userId: 'user-2',
        conversationId: 'conv-2',
        kind: 'commitment',
        sourceTurnIds: ['turn-5'],
        text: 'Send Otto the contract by Friday.',
        occurredAt: T0 + 5,
      }),
      // Would make the turn-1 group differ, but it is superseded.
      entry(NEW, { sourceTurnIds: ['turn-1'], text: 'Lena lived in Lisbon.', occurredAt: T0 - DAY }),
      entry(NEW, { tenantId: B, sourceTurnIds: ['turn-1'], text: 'Otto lives in Braga now.' }),
    ]),
  );
  // Superseded in each version: not current, so compared nowhere (the old one would count as removed).
  const oldWork = entry(OLD, { sourceTurnIds: ['turn-7'], text: 'Lena works at Acme.', occurredAt: T0 + 4 });
  assert.equal(await from.supersede({ tenantId: A }, [oldWork.id], 'mem-elsewhere', T0 + DAY), 1);
  const lisbon = entry(NEW, {
    sourceTurnIds: ['turn-1'],
    text: 'Lena lived in Lisbon.',
    occurredAt: T0 - DAY,
  });
  const porto = entry(NEW, lives);
  assert.equal(await to.supersede({ tenantId: A }, [lisbon.id], porto.id, T0), 1);
  return { from, to };
}

const dogKey = matchKey({
  userId: 'user-1',
  conversationId: 'conv-1',
  kind: 'fact',
  sourceTurnIds: ['turn-4'],
});
const expectedA: VersionDiff = {
  from: 'v1',
  to: 'v2',
  tenants: [A],
  before: 5,
  after: 5,
  unchanged: 2,
  changed: 1,
  added: 1,
  removed: 1,
  samples: {
    changed: [
      {
        tenantId: A,
        key: dogKey,
        userId: 'user-1',
        before: 'Lena has a dog named Rex.',
        after: 'Lena has a dog called Rex.',
        sourceTurnIds: ['turn-4'],
      },
    ],
    added: [
      {
        tenantId: A,
        key: JSON.stringify(['user-2', 'conv-2', 'commitment', ['turn-5']]),
        userId: 'user-2',
        after: 'Send Otto the contract by Friday.',
        sourceTurnIds: ['turn-5'],
      },
    ],
    removed: [
      {
        tenantId: A,
        key: JSON.stringify(['user-1', 'conv-1', 'fact', ['turn-6']]),
        userId: 'user-1',
        before: 'Lena is vegetarian.',
        sourceTurnIds: ['turn-6'],
      },
    ],
  },
};

/** Records the list requests a store gets. */
function recording(store: MemoryStore): { store: Pick<MemoryStore, 'list'>; requests: ListRequest[] } {
  const requests: ListRequest[] = [];
  return {
    requests,
    store: {
      list: (request) => {
        requests.push(request);
        return store.list(request);
      },
    },
  };
}

describe('diffVersions', () => {
  it('matches memories by origin across versions, counting groups of one origin once', async () => {
    const { from, to } = await twoVersions();
    try {
      const diff = await diffVersions({
        from: { name: 'v1', store: from },
        to: { name: 'v2', store: to },
        tenants: [A],
      });
      assert.deepEqual(diff, expectedA);
    } finally {
      await from.close();
      await to.close();
    }
  });

  it('gives the same result when it pages two memories at a time', async () => {
    const { from, to } = await twoVersions();
    try {
      const old = recording(from);
      const replay = recording(to);
      const diff = await diffVersions({
        from: { name: 'v1', store: old.store },
        to: { name: 'v2', store: replay.store },
        tenants: [A],
        pageSize: 2,
      });
      assert.deepEqual(diff, expectedA);
      for (const { requests } of [old, replay]) {
        // 5 current memories: pages of 2, 2, 1; read once for the counts and once for the samples.
        assert.equal(requests.length, 6);
        assert.ok(requests.every((request) => request.limit === 2 && request.includeSuperseded === false));
        assert.ok(requests.every((request) => request.scope.tenantId === A));
        assert.deepEqual(
          requests.map((request) => request.cursor === undefined),
          [true, false, false, true, false, false],
        );
      }
    } finally {
      await from.close();
      await to.close();
    }
  });

  it('adds up several tenants, keeping tenants apart even where their keys are the same', async () => {
    const { from, to } = await twoVersions();
    try {
      const diff = await diffVersions({
        from: { name: 'v1', store: from },
        to: { name: 'v2', store: to },
        tenants: [B, A, B],
        pageSize: 3,
      });
      assert.deepEqual(diff.tenants, [B, A]);
      assert.deepEqual(
        [diff.before, diff.after, diff.unchanged, diff.changed, diff.added, diff.removed],
        [6, 6, 2, 2, 1, 1],
      );
      assert.deepEqual(
        diff.samples.changed.map((sample) => [sample.tenantId, sample.key, sample.before, sample.after]),
        [
          [A, dogKey, 'Lena has a dog named Rex.', 'Lena has a dog called Rex.'],
          [
            B,
            matchKey({ ...makeEntry(), sourceTurnIds: ['turn-1'] }),
            'Otto lives in Braga.',
            'Otto lives in Braga now.',
          ],
        ],
      );
    } finally {
      await from.close();
      await to.close();
    }
  });

  it('keeps the first samples by key, with the texts of a group sorted and cut to 200 characters', async () => {
    const from = open();
    const to = open();
    try {
      const long = 'x'.repeat(300);
      const writes = (version: typeof OLD | typeof NEW, suffix: string): MemoryEntry[] =>
        [7, 3, 9, 1, 5].flatMap((n) => [
          entry(version, { sourceTurnIds: [`turn-${n}`], text: `b fact ${n}${suffix}` }),
          entry(version, { sourceTurnIds: [`turn-${n}`], text: `a fact ${n}${n === 3 ? long : ''}` }),
        ]);
      await from.upsert(plainWrites(writes(OLD, '')));
      await to.upsert(plainWrites(writes(NEW, ' (new)')));
      const diff = await diffVersions({
        from: { name: 'v1', store: from },
        to: { name: 'v2', store: to },
        tenants: [A],
        sampleLimit: 2,
      });
      assert.deepEqual([diff.before, diff.after, diff.unchanged, diff.changed], [10, 10, 0, 5]);
      assert.deepEqual(
        diff.samples.changed.map((sample) => sample.sourceTurnIds),
        [['turn-1'], ['turn-3']],
      );
      assert.equal(diff.samples.changed[0]?.before, 'a fact 1\nb fact 1');
      assert.equal(diff.samples.changed[0]?.after, 'a fact 1\nb fact 1 (new)');
      const cut = diff.samples.changed[1]?.before ?? '';
      assert.equal(cut.length, 200);
      assert.equal(cut, `a fact 3${'x'.repeat(191)}…`);
      assert.deepEqual(diff.samples.added, []);
      assert.deepEqual(diff.samples.removed, []);

      const none = await diffVersions({
        from: { name: 'v1', store: from },
        to: { name: 'v2', store: to },
        tenants: [A],
        sampleLimit: 0,
      });
      assert.equal(none.changed, 5);
      assert.deepEqual(none.samples, { changed: [], added: [], removed: [] });
    } finally {
      await from.close();
      await to.close();
    }
  });

  it('refuses a page size or a sample limit that is not a count', async () => {
    const store = open();
    try {
      const sides = { from: { name: 'v1', store }, to: { name: 'v2', store }, tenants: [A] };
      await assert.rejects(diffVersions({ ...sides, pageSize: 0 }), /pageSize/);
      await assert.rejects(diffVersions({ ...sides, sampleLimit: -1 }), /sampleLimit/);
    } finally {
      await store.close();
    }
  });
});
