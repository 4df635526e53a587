import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { MemoryStore } from '../../services/core/ports/memory-store.js';
import { formatScaleReport, runScaleBench, type ScaleStoreKind } from '../../services/bench/scale-bench.js';
import { Vocabulary, seededRandom, turnText, unitVector } from '../../services/bench/scale-corpus.js';
import { scaleBench, sqliteKind } from '../../services/cli/bench-scale-command.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-scale-bench-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('bench scale', () => {
  it('generates the same corpus from the same seed', () => {
    const vocabulary = new Vocabulary(1_000);
    const draw = (seed: number) => {
      const random = seededRandom(seed);
      return [turnText(vocabulary, random), Array.from(unitVector(8, random))];
    };
    assert.deepEqual(draw(3), draw(3));
    assert.notDeepEqual(draw(3), draw(4));
    const vector = unitVector(384, seededRandom(1));
    assert.ok(Math.abs(vector.reduce((sum, v) => sum + v * v, 0) - 1) < 1e-5);
  });

  it('measures both layouts at each size, with lexical and hybrid latencies', async () => {
    const report = await runScaleBench({
      sizes: [40, 120],
      queries: 5,
      tenantUsers: 4,
      dims: 16,
      warmUp: 2,
      stores: [sqliteKind(dir)],
    });
    assert.equal(report.benchmark, 'scale');
    assert.deepEqual(
      report.cases.map((c) => [c.store, c.layout, c.memories, c.users, c.scopeMemories]),
      [
        ['sqlite', 'user', 40, 1, 40],
        ['sqlite', 'tenant', 40, 4, 10],
        ['sqlite', 'user', 120, 1, 120],
        ['sqlite', 'tenant', 120, 4, 30],
      ],
    );
    for (const c of report.cases) {
      assert.equal(c.lexical.count, 5);
      assert.equal(c.hybrid.count, 5);
      assert.ok(c.hybrid.p95Ms >= c.hybrid.p50Ms);
      assert.equal(c.recallAt10, 1);
    }
    assert.equal(formatScaleReport(report).length, 2 + report.cases.length);
    assert.deepEqual(readdirSync(dir), [], 'each store file is removed after its case');
  });

  it('scores an approximate store against the exact one', async () => {
    const exact = sqliteKind(dir);
    // An "approximate" store that misses the nearest vector of every kNN search: 9 of the exact 10.
    const lossy: ScaleStoreKind = {
      name: 'lossy',
      exact: false,
      async open(label) {
        const opened = await exact.open(`lossy-${label}`);
        const store = opened.store;
        const search: MemoryStore['search'] = async (request) => {
          const hits = await store.search(request);
          return request.text === '' ? hits.slice(1) : hits;
        };
        return {
          close: () => opened.close(),
          store: Object.assign(Object.create(store) as MemoryStore, { search }),
        };
      },
    };
    const report = await runScaleBench({
      sizes: [30],
      layouts: ['user'],
      queries: 4,
      dims: 8,
      warmUp: 1,
      stores: [lossy, { ...sqliteKind(dir), name: 'other', exact: false }, exact],
    });
    assert.deepEqual(
      report.cases.map((c) => [c.store, c.recallAt10, c.hybridAgreement]),
      [
        ['sqlite', 1, 1],
        ['lossy', 0.9, 1],
        ['other', 1, 1],
      ],
    );
    for (const c of report.cases) assert.equal(c.semantic.count, 4);
  });

  it('runs from the command line and prints one JSON report', async () => {
    const lines: string[] = [];
    const log = console.log;
    console.log = (line: unknown) => lines.push(String(line));
    try {
      const code = await scaleBench([
        '--sizes',
        '50',
        '--queries',
        '3',
        '--users',
        '5',
        '--dims',
        '8',
        '--dir',
        dir,
        '--json',
      ]);
      assert.equal(code, 0);
    } finally {
      console.log = log;
    }
    assert.equal(lines.length, 1);
    const report = JSON.parse(lines[0] ?? '{}') as { cases: { layout: string; hybrid: { p95Ms: number } }[] };
    assert.deepEqual(
      report.cases.map((c) => c.layout),
      ['user', 'tenant'],
    );
    assert.equal(typeof report.cases[0]?.hybrid.p95Ms, 'number');
  });
});
