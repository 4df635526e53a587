// Kill -9 at random points of an ingest and compare with an uninterrupted one (test/e2e/durability*.test.ts).
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { collect, runCli, spawnCli, tempDir } from './cli.js';
import { memoryIds } from './store-snapshot.js';

/** Small seeded PRNG so a failing run can be repeated (the seed is printed). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Extra environment of the killed runs only (lets a mutation check break the victim, not the reference). */
const victimEnv: Record<string, string> =
  process.env['LIGHTMEM_VICTIM_ENV'] === undefined
    ? {}
    : (JSON.parse(process.env['LIGHTMEM_VICTIM_ENV']) as Record<string, string>);

export interface Scenario {
  /** A data dir to start from (copied to both runs), or none. */
  readonly from?: string;
  readonly file: string;
  readonly tenant?: string;
  /** Tenants whose memories are compared. */
  readonly tenants: readonly string[];
  /** Configuration on top of the small batches every run gets, and environment of every run. */
  readonly config?: Readonly<Record<string, unknown>>;
  readonly env?: Readonly<Record<string, string>>;
  /** Further checks once both runs are done (kills: how many landed). */
  readonly check?: (dirs: { victim: string; reference: string; kills: number }) => void | Promise<void>;
}

/**
 * Ingests `file` into a reference data dir without interruption and into a victim data dir killed with
 * SIGKILL ≥5 times mid-ingest (then run once more to the end); both must end with the same memories, and
 * the victim's log must hold each turn once.
 */
export async function killAndCompare(scenario: Scenario): Promise<void> {
  const reference = tempDir('reference');
  const victim = tempDir('victim');
  if (scenario.from !== undefined) {
    for (const dir of [reference.path, victim.path]) cpSync(scenario.from, dir, { recursive: true });
  }
  // Small batches (many commit points to crash between) and segment memories too, whose ids depend on
  // where the persisted buffers cut: a lost or repeated buffer changes the ids.
  const config = join(reference.path, 'test-config.json');
  writeFileSync(
    config,
    JSON.stringify({
      pipeline: { batchSize: 16 },
      ...scenario.config,
      summarizer: { granularity: 'both', ...(scenario.config?.['summarizer'] as object | undefined) },
    }),
  );
  const env = { ...scenario.env, LIGHTMEM_CONFIG: config };
  const args = (dataDir: string) => [
    'ingest',
    scenario.file,
    '--format',
    'locomo',
    '--data-dir',
    dataDir,
    '--quiet',
    ...(scenario.tenant === undefined ? [] : ['--tenant', scenario.tenant]),
  ];
  try {
    const started = Date.now();
    const referenceRun = spawnCli(args(reference.path), env);
    // Start-up: until a run's first output (the model loader's line, as it opens the data dir).
    let startupMs = 400;
    referenceRun.stderr?.once('data', () => (startupMs = Math.max(400, Date.now() - started)));
    const clean = await collect(referenceRun);
    assert.equal(clean.code, 0, clean.stderr);
    const cleanMs = Date.now() - started;
    const expected = await allMemoryIds(reference.path, scenario.tenants);
    assert.ok(expected.length > 300);

    const seed = Number(process.env['LIGHTMEM_TEST_SEED'] ?? Date.now() % 100_000);
    const random = mulberry32(seed);
    const delays: number[] = [];
    let kills = 0;
    // Each kill lands anywhere from start-up to the end of the victim's run: what it has left to do after
    // start-up is the whole ingest at first, less what each killed run got through (an underestimate: a
    // restarted run redoes its unfinished batch), and nothing once a run has finished, when a run takes at
    // most as long as that one did. So the kills interrupt ingest work rather than reruns with nothing to do.
    let workMs = cleanMs - startupMs;
    let finishedRunMs = Infinity;
    for (let attempt = 0; kills < 5 && attempt < 20; attempt++) {
      const spawnedAt = Date.now();
      const child = spawnCli(args(victim.path), { ...env, ...victimEnv });
      const done = collect(child);
      const runMs = Math.min(finishedRunMs, Math.max(1_400, startupMs + workMs));
      const delay = Math.round(400 + random() * (runMs - 400));
      const finished = await Promise.race([done.then(() => true), sleep(delay).then(() => false)]);
      if (!finished) child.kill('SIGKILL');
      const result = await done;
      if (result.signal === 'SIGKILL') {
        kills++;
        delays.push(delay);
        workMs = Math.max(0, workMs - Math.max(0, delay - startupMs));
      } else {
        workMs = 0;
        finishedRunMs = Math.min(finishedRunMs, Date.now() - spawnedAt);
      }
    }
    assert.ok(kills >= 5, `only ${kills} kills landed (seed ${seed}, delays ${delays.join(',')} ms)`);
    const final = await runCli(args(victim.path), { ...env, ...victimEnv });
    assert.equal(final.code, 0, final.stderr);
    const actual = await allMemoryIds(victim.path, scenario.tenants);
    const context = `seed ${seed}, kill delays ${delays.join(',')} ms`;
    assert.equal(actual.length, expected.length, context);
    assert.deepEqual(actual, expected, context);
    assert.equal(
      keyedRawRecords(victim.path),
      keyedRawRecords(reference.path),
      `turns appended twice (${context})`,
    );
    await scenario.check?.({ victim: victim.path, reference: reference.path, kills });
  } finally {
    reference.remove();
    victim.remove();
  }
}

async function allMemoryIds(dataDir: string, tenants: readonly string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const tenant of tenants) ids.push(...(await memoryIds(dataDir, tenant)));
  return ids;
}

/** Raw-log records that carry an idempotency key (turns): each turn once, however often it was sent. */
function keyedRawRecords(dataDir: string): number {
  const db = new Database(join(dataDir, 'log.db'), { readonly: true });
  try {
    const row = db
      .prepare(
        `SELECT COUNT(*) AS n FROM records WHERE topic = 'lightmem.turns.raw' AND dedup_key IS NOT NULL`,
      )
      .get() as { n: number };
    return row.n;
  } finally {
    db.close();
  }
}
