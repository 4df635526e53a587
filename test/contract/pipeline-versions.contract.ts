import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LightmemError } from '../../services/core/errors.js';
import {
  derives,
  routeOf,
  servesReads,
  versionName,
  type NewVersion,
  type PipelineVersions,
} from '../../services/core/ports/pipeline-versions.js';

export interface PipelineVersionsFixture {
  /** A registry over fresh, empty storage. */
  open: () => Promise<PipelineVersions>;
  /** A second registry over the same storage as `versions` (another process of the data dir). */
  sibling: (versions: PipelineVersions) => Promise<PipelineVersions>;
}

const at = 1_700_000_000_000;

/** A new version's description: every tenant unless told. */
function newVersion(tenants: readonly string[] | null = null, config = '{"model":"m2"}'): NewVersion {
  return { tenants, config, createdAt: at };
}

/**
 * Asserts that `work` fails with a LightmemError of `code` (and `field`, `retryable` when given). `work`
 * is a thunk so that a refusal thrown before a promise is returned is still checked here; whether refusals
 * come as rejections is a test of its own.
 */
async function rejectsWith(
  work: () => Promise<unknown>,
  code: LightmemError['code'],
  expected: { field?: string; retryable?: boolean; message?: string } = {},
): Promise<void> {
  const { field, retryable, message } = expected;
  await assert.rejects(
    Promise.resolve().then(work),
    (error: unknown) => {
      assert.ok(error instanceof LightmemError, `a LightmemError, got ${String(error)}`);
      assert.equal(error.code, code, message);
      if (field !== undefined) assert.equal(error.field, field, message);
      if (retryable !== undefined) assert.equal(error.retryable, retryable, message);
      return true;
    },
    message,
  );
}

/** What every PipelineVersions must do. */
export function pipelineVersionsContract(name: string, fixture: PipelineVersionsFixture): void {
  const withVersions = async (work: (versions: PipelineVersions) => Promise<void>): Promise<void> => {
    const versions = await fixture.open();
    try {
      await work(versions);
    } finally {
      await versions.close();
    }
  };

  /** Creates the next version and marks it built. */
  const built = async (versions: PipelineVersions, tenants: readonly string[] | null = null) => {
    const version = await versions.create(newVersion(tenants));
    await versions.markBuilt(version.name, at + 1);
    return (await versions.get(version.name))!;
  };

  describe(`${name} (PipelineVersions contract)`, () => {
    it('starts with version v1 only, built, for every tenant, serving every read', () =>
      withVersions(async (versions) => {
        const listed = await versions.list();
        assert.equal(listed.length, 1);
        const [v1] = listed;
        assert.ok(v1 !== undefined);
        assert.equal(v1.name, 'v1');
        assert.equal(v1.number, 1);
        assert.equal(v1.tenants, null);
        assert.equal(v1.config, null);
        assert.notEqual(v1.builtAt, null);
        assert.equal(v1.droppedAt, null);
        assert.deepEqual(await versions.get('v1'), v1);
        assert.ok(derives(v1, 'any-tenant'));
        const routes = await versions.routes();
        assert.deepEqual(routes, { all: 'v1', tenants: {} });
        assert.ok(servesReads(routes, 'v1'));
        assert.equal(routeOf(routes, 'any-tenant'), 'v1');
      }));

    it('creates v2, v3… in order, building, with tenants de-duplicated and sorted', () =>
      withVersions(async (versions) => {
        const v2 = await versions.create(newVersion(['b', 'a', 'b', 'c'], '{"n":2}'));
        assert.deepEqual(v2, {
          name: 'v2',
          number: 2,
          tenants: ['a', 'b', 'c'],
          config: '{"n":2}',
          createdAt: at,
          builtAt: null,
          droppedAt: null,
          copied: 0,
          since: null,
          sinceOffset: null,
        });
        const v3 = await versions.create({ tenants: null, config: '{"n":3}', createdAt: at + 5 });
        assert.equal(v3.name, versionName(3));
        assert.equal(v3.number, 3);
        assert.equal(v3.tenants, null);
        assert.equal(v3.builtAt, null);
        assert.deepEqual(await versions.get('v2'), v2);
        assert.deepEqual(await versions.get('v3'), v3);
        assert.deepEqual(
          (await versions.list()).map((v) => v.name),
          ['v1', 'v2', 'v3'],
        );
        assert.ok(derives(v2, 'a') && !derives(v2, 'd'));
        // A replay --since keeps its instant and the raw log's end when it was made.
        const v4 = await versions.create({
          tenants: ['a'],
          config: '{}',
          createdAt: at,
          since: { at: at - 1_000, offset: 42 },
        });
        assert.equal(v4.since, at - 1_000);
        assert.equal(v4.sinceOffset, 42);
        assert.deepEqual(await versions.get('v4'), v4);
      }));

    it('bumps the generation on create, the first markBuilt, switchTo and drop; not on advance', () =>
      withVersions(async (versions) => {
        let last = await versions.generation();
        const bumped = async (what: string): Promise<void> => {
          const now = await versions.generation();
          assert.ok(now > last, `${what} bumps the generation (${last} → ${now})`);
          last = now;
        };
        const unchanged = async (what: string): Promise<void> => {
          assert.equal(await versions.generation(), last, `${what} leaves the generation`);
        };

        await versions.create(newVersion());
        await bumped('create');
        await versions.advance('v2', 10);
        await unchanged('advance');
        await versions.markBuilt('v2', at + 1);
        await bumped('markBuilt');
        await versions.markBuilt('v2', at + 2);
        await unchanged('a second markBuilt');
        assert.equal((await versions.get('v2'))?.builtAt, at + 1, 'the first built time stays');
        await versions.switchTo('v2', null);
        await bumped('switchTo');
        await versions.drop('v1', at + 3);
        await bumped('drop');
      }));

    it('advances the copy cursor, never back', () =>
      withVersions(async (versions) => {
        const { name: v2 } = await versions.create(newVersion());
        await versions.advance(v2, 10);
        assert.equal((await versions.get(v2))?.copied, 10);
        await versions.advance(v2, 5);
        assert.equal((await versions.get(v2))?.copied, 10, 'advance never moves back');
        await versions.advance(v2, 12);
        assert.equal((await versions.get(v2))?.copied, 12);
      }));

    it('answers not_found on field version for unknown version names; get gives undefined', () =>
      withVersions(async (versions) => {
        await versions.create(newVersion());
        for (const unknown of ['v99', 'x', 'v0', 'v01', '', '2', 'V2', ' v2', 'v2 ']) {
          const message = JSON.stringify(unknown);
          assert.equal(await versions.get(unknown), undefined, message);
          await rejectsWith(() => versions.advance(unknown, 1), 'not_found', { field: 'version', message });
          await rejectsWith(() => versions.markBuilt(unknown, at), 'not_found', {
            field: 'version',
            message,
          });
          await rejectsWith(() => versions.switchTo(unknown, null), 'not_found', {
            field: 'version',
            message,
          });
          await rejectsWith(() => versions.drop(unknown, at), 'not_found', { field: 'version', message });
        }
        assert.equal((await versions.get('v2'))?.builtAt, null, 'nothing was marked by the refusals');
        assert.deepEqual(await versions.routes(), { all: 'v1', tenants: {} });
      }));

    it('refuses to switch to a building version (retryable) or a dropped one', () =>
      withVersions(async (versions) => {
        const building = await versions.create(newVersion());
        const generation = await versions.generation();
        await rejectsWith(() => versions.switchTo(building.name, null), 'conflict', { retryable: true });
        await rejectsWith(() => versions.switchTo(building.name, ['a']), 'conflict', { retryable: true });

        const dropped = await built(versions);
        await versions.drop(dropped.name, at + 2);
        await rejectsWith(() => versions.switchTo(dropped.name, null), 'conflict');
        await rejectsWith(() => versions.switchTo(dropped.name, ['a']), 'conflict');

        assert.deepEqual(await versions.routes(), { all: 'v1', tenants: {} });
        assert.ok((await versions.generation()) > generation);
      }));

    it('refuses to switch tenants a version does not derive', () =>
      withVersions(async (versions) => {
        const onlyA = await built(versions, ['a']);
        await rejectsWith(() => versions.switchTo(onlyA.name, null), 'conflict', {
          message: 'a tenant-limited version cannot serve every tenant',
        });
        await rejectsWith(() => versions.switchTo(onlyA.name, ['b']), 'conflict', { field: 'tenantId' });
        await rejectsWith(() => versions.switchTo(onlyA.name, ['a', 'b']), 'conflict', {
          field: 'tenantId',
          message: 'all or nothing: one tenant it does not derive refuses the switch',
        });
        assert.deepEqual(await versions.routes(), { all: 'v1', tenants: {} });
      }));

    it('switches some tenants to a tenant-limited version; the others stay', () =>
      withVersions(async (versions) => {
        const onlyA = await built(versions, ['a']);
        const routes = await versions.switchTo(onlyA.name, ['a']);
        assert.equal(routeOf(routes, 'a'), onlyA.name);
        assert.equal(routeOf(routes, 'b'), 'v1');
        assert.equal(routes.all, 'v1');
        assert.deepEqual(await versions.routes(), routes);
        assert.ok(servesReads(routes, onlyA.name));
      }));

    it('switching every tenant to an all-tenant version clears the per-tenant routes', () =>
      withVersions(async (versions) => {
        const onlyA = await built(versions, ['a']);
        const all = await built(versions);
        await versions.switchTo(onlyA.name, ['a']);
        await versions.switchTo(all.name, ['b']);
        assert.deepEqual(await versions.routes(), {
          all: 'v1',
          tenants: { a: onlyA.name, b: all.name },
        });
        const routes = await versions.switchTo(all.name, null);
        assert.deepEqual(routes, { all: all.name, tenants: {} });
        assert.deepEqual(await versions.routes(), routes);
        assert.equal(routeOf(routes, 'a'), all.name);
        assert.ok(!servesReads(routes, 'v1') && !servesReads(routes, onlyA.name));
      }));

    it('switching a tenant back to the version serving every tenant removes its own route', () =>
      withVersions(async (versions) => {
        const v2 = await built(versions);
        let routes = await versions.switchTo(v2.name, ['a', 'b']);
        assert.deepEqual(routes, { all: 'v1', tenants: { a: v2.name, b: v2.name } });
        routes = await versions.switchTo('v1', ['a']);
        assert.deepEqual(routes, { all: 'v1', tenants: { b: v2.name } });
        assert.ok(!('a' in routes.tenants));
        assert.equal(routeOf(routes, 'a'), 'v1');

        routes = await versions.switchTo(v2.name, null);
        assert.deepEqual(routes, { all: v2.name, tenants: {} });
        routes = await versions.switchTo(v2.name, ['c']);
        assert.ok(!('c' in routes.tenants), 'a tenant switched to where every tenant goes has no route');
        assert.deepEqual(await versions.routes(), { all: v2.name, tenants: {} });
      }));

    it('refuses to drop a version that serves reads of any tenant', () =>
      withVersions(async (versions) => {
        await rejectsWith(() => versions.drop('v1', at), 'conflict', { message: 'v1 serves every read' });
        const v2 = await built(versions);
        await versions.switchTo(v2.name, ['a']);
        await rejectsWith(() => versions.drop(v2.name, at), 'conflict', {
          message: 'v2 serves tenant a',
        });
        await rejectsWith(() => versions.drop('v1', at), 'conflict');
        assert.equal((await versions.get('v1'))?.droppedAt, null);
        assert.equal((await versions.get(v2.name))?.droppedAt, null);
      }));

    it('drops a version that serves no reads, once: again keeps the first time; it stays listed', () =>
      withVersions(async (versions) => {
        const building = await versions.create(newVersion());
        const dropped = await versions.drop(building.name, at + 10);
        assert.deepEqual(dropped, { ...building, droppedAt: at + 10 });
        assert.deepEqual(await versions.get(building.name), dropped);
        assert.deepEqual(
          await versions.drop(building.name, at + 20),
          dropped,
          'a second drop keeps the first',
        );

        const v3 = await built(versions);
        await versions.switchTo(v3.name, null);
        const v1 = await versions.drop('v1', at + 30);
        assert.equal(v1.droppedAt, at + 30);
        assert.deepEqual(
          (await versions.list()).map((v) => [v.name, v.droppedAt]),
          [
            ['v1', at + 30],
            [building.name, at + 10],
            [v3.name, null],
          ],
        );
      }));

    it('refuses by rejecting the returned promise, never by throwing synchronously', () =>
      withVersions(async (versions) => {
        const building = await versions.create(newVersion());
        const refusals: [string, () => Promise<unknown>][] = [
          ['advance v99', () => versions.advance('v99', 1)],
          ['markBuilt v99', () => versions.markBuilt('v99', at)],
          ['switchTo v99', () => versions.switchTo('v99', null)],
          ['drop v99', () => versions.drop('v99', at)],
          ['switchTo a building version', () => versions.switchTo(building.name, null)],
          ['drop the version serving reads', () => versions.drop('v1', at)],
        ];
        const thrown: string[] = [];
        for (const [what, call] of refusals) {
          let promise: Promise<unknown>;
          try {
            promise = call();
          } catch (error) {
            thrown.push(`${what} (${String(error)})`);
            continue;
          }
          await assert.rejects(promise, LightmemError, what);
        }
        assert.deepEqual(thrown, [], 'refusals thrown synchronously instead of rejecting');
      }));

    it('a sibling over the same storage sees creates and switches at once', async () => {
      const first = await fixture.open();
      const second = await fixture.sibling(first);
      try {
        assert.equal(await second.generation(), await first.generation());
        const v2 = await first.create(newVersion(['a']));
        assert.equal(await second.generation(), await first.generation());
        assert.deepEqual(await second.get(v2.name), v2);
        await second.markBuilt(v2.name, at + 1);
        assert.equal((await first.get(v2.name))?.builtAt, at + 1);

        const generation = await second.generation();
        const routes = await first.switchTo(v2.name, ['a']);
        assert.ok((await second.generation()) > generation);
        assert.deepEqual(await second.routes(), routes);
        assert.equal(routeOf(await second.routes(), 'a'), v2.name);
        await rejectsWith(() => second.drop(v2.name, at), 'conflict', {
          message: "the sibling's switch protects v2 here too",
        });
        assert.deepEqual(await second.list(), await first.list());
      } finally {
        await second.close();
        await first.close();
      }
    });

    it('two registries creating at once get distinct numbers', async () => {
      const first = await fixture.open();
      const second = await fixture.sibling(first);
      try {
        const created = await Promise.all([
          first.create(newVersion()),
          second.create(newVersion(['a'])),
          first.create(newVersion(['b'])),
          second.create(newVersion()),
        ]);
        const numbers = created.map((v) => v.number);
        assert.equal(new Set(numbers).size, numbers.length, `distinct: ${numbers.join(', ')}`);
        assert.deepEqual(
          [...numbers].sort((a, b) => a - b),
          [2, 3, 4, 5],
        );
        assert.deepEqual(
          (await second.list()).map((v) => v.number),
          [1, 2, 3, 4, 5],
        );
      } finally {
        await second.close();
        await first.close();
      }
    });
  });
}
