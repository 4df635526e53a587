import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { collect, locomoFile, runCli, spawnCli, tempDir } from '../support/cli.js';
import { memoryIds } from '../support/store-snapshot.js';

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

describe('durability under kill -9', () => {
  it(
    'ends with exactly the memories of an uninterrupted run after ≥5 SIGKILLs mid-ingest',
    { timeout: 240_000 },
    async () => {
      const reference = tempDir('reference');
      const victim = tempDir('victim');
      // Small batches (many commit points to crash between) and segment memories too, whose ids depend on
      // where the persisted buffers cut: a lost or repeated buffer changes the ids.
      const config = join(reference.path, 'test-config.json');
      writeFileSync(
        config,
        JSON.stringify({ pipeline: { batchSize: 16 }, summarizer: { granularity: 'both' } }),
      );
      const env = { LIGHTMEM_CONFIG: config };
      try {
        const clean = await runCli(
          ['ingest', locomoFile, '--format', 'locomo', '--data-dir', reference.path, '--quiet'],
          env,
        );
        assert.equal(clean.code, 0, clean.stderr);
        const expected = await memoryIds(reference.path);
        assert.ok(expected.length > 3000);

        const seed = Number(process.env['LIGHTMEM_TEST_SEED'] ?? Date.now() % 100_000);
        const random = mulberry32(seed);
        const delays: number[] = [];
        let kills = 0;
        for (let attempt = 0; kills < 5 && attempt < 20; attempt++) {
          const child = spawnCli(
            ['ingest', locomoFile, '--format', 'locomo', '--data-dir', victim.path, '--quiet'],
            {
              ...env,
              ...victimEnv,
            },
          );
          const done = collect(child);
          // tsx start-up takes ~0.5 s; a whole run ~2–3 s: kill anywhere from start-up to the end.
          const delay = Math.round(400 + random() * 2600);
          const finished = await Promise.race([done.then(() => true), sleep(delay).then(() => false)]);
          if (!finished) {
            child.kill('SIGKILL');
            const result = await done;
            if (result.signal === 'SIGKILL') {
              kills++;
              delays.push(delay);
            }
          }
        }
        assert.ok(kills >= 5, `only ${kills} kills landed (seed ${seed})`);
        const final = await runCli(
          ['ingest', locomoFile, '--format', 'locomo', '--data-dir', victim.path, '--quiet'],
          {
            ...env,
            ...victimEnv,
          },
        );
        assert.equal(final.code, 0, final.stderr);
        const actual = await memoryIds(victim.path);
        assert.equal(actual.length, expected.length, `seed ${seed}, kill delays ${delays.join(',')} ms`);
        assert.deepEqual(actual, expected, `seed ${seed}, kill delays ${delays.join(',')} ms`);
      } finally {
        reference.remove();
        victim.remove();
      }
    },
  );
});
