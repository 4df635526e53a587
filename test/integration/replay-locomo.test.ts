// Replay of LoCoMo dialogues into a second pipeline version with one setting changed, through the real CLI
// and server with the real embedding model (embedded mode: no external servers).
//
// The change: `summarizer.granularity` from `turn` (the default: one memory per turn) to `both` (the same turn
// memories, plus one `summary` memory per topic segment that cites the segment's turns). Its effect on the
// diff is known exactly: every group of v1 is unchanged, nothing is changed or removed, and the added groups
// are the segment summaries. The replay is killed with SIGKILL (server and CLI) while the server builds it,
// resumed, compared, switched under a search load, and the old version dropped.
//
// Sleep-time consolidation is off in both versions (the data dir's config.json and the replay's config):
// with it on, the server merges near-duplicates of v1 and of v2 at times that depend on when their runs
// happen, and the diff would no longer have a known answer. The one setting the two versions differ in is
// the granularity.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import type { ReplayStatus } from '../../services/app/replays.js';
import type { VersionDiff } from '../../services/app/version-diff.js';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import {
  collect,
  lastJsonLine,
  locomoFile,
  spawnCli,
  startServer,
  tempDir,
  type CliResult,
} from '../support/cli.js';
import { fetchModel, realModelEnv } from './support/models.js';
import {
  assertDropped,
  assertDropRefused,
  assertKilled,
  assertKnownGranularityDiff,
  assertLeftBuilding,
  assertOneMemoryPerTurn,
  assertSwitchedUnderLoad,
  assertTurnsKeptAndSummarized,
  currentMemories,
  finishedWithin,
  searchBody,
  searchLoad,
  searchUser,
  seconds,
  switchAfterWarmUp,
  timed,
  tenant,
  turnsOf,
  untilMidBuild,
  type LocomoSample,
  type SearchResult,
} from './support/replay.js';

/**
 * LoCoMo samples replayed: the first two of the dev file (conv-26 and conv-30, 788 of its 3,435 turns) by
 * default. The whole file (`LIGHTMEM_REPLAY_SAMPLES=all`) takes an ingest and a replay of ~3,400 turns each,
 * far beyond the suite's time budget on 2 cores.
 */
const samplesSetting = process.env['LIGHTMEM_REPLAY_SAMPLES'] ?? '2';

/** Every current memory of the tenant in a store file. */
async function memoriesIn(file: string): Promise<MemoryEntry[]> {
  assert.ok(existsSync(file), `no store at ${file}`);
  const store = SqliteMemoryStore.open(file);
  try {
    return await currentMemories(store, { tenantId: tenant });
  } finally {
    await store.close();
  }
}

describe('replay of LoCoMo into a version with summarizer.granularity=both', () => {
  const dir = tempDir('replay-locomo');
  const dataDir = join(dir.path, 'data');
  const replayConfig = join(dir.path, 'replay-config.json');
  const dataset = join(dir.path, 'locomo.json');
  const env = realModelEnv();
  const timings: Record<string, string> = {};
  let server: Awaited<ReturnType<typeof startServer>> | null = null;
  let turns = 0;
  let v1Memories = 0;
  /** v2's memories when its build was killed. */
  let v2AtKill = -1;

  /** An API request with the data dir's admin key; the answer's status and parsed body. */
  const api = async (
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }> => {
    assert.ok(server !== null, 'no server');
    const response = await fetch(`${server.base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${server.apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: await response.json() };
  };
  const search = async (): Promise<SearchResult[]> => {
    const answer = await api('POST', '/v1/search', searchBody());
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return (answer.body as { results: SearchResult[] }).results;
  };
  const cli = async (args: readonly string[], ms = 5 * 60_000): Promise<CliResult> =>
    finishedWithin(spawnCli([...args, '--data-dir', dataDir], env), ms, `lightmem ${args.join(' ')}`);

  before(async () => {
    await fetchModel();
    const samples = JSON.parse(readFileSync(locomoFile, 'utf8')) as LocomoSample[];
    const used = samplesSetting === 'all' ? samples : samples.slice(0, Number(samplesSetting));
    assert.ok(used.length > 0 && used.some((s) => s.sample_id === searchUser), 'the samples hold conv-26');
    turns = turnsOf(used);
    writeFileSync(dataset, JSON.stringify(used));
    console.log(`LoCoMo dev: ${used.length} of ${samples.length} samples, ${turns} turns`);
    // Every process of the data dir without --config reads <dataDir>/config.json: no consolidation (see the
    // top of the file), and a rate limit the search load below cannot reach (a 429 is not what is tested).
    mkdirSync(dataDir);
    writeFileSync(
      join(dataDir, 'config.json'),
      JSON.stringify({
        consolidation: { enabled: false },
        // The known answer needs one memory per turn: long turns are not split into sentence chunks.
        summarizer: { splitWords: 0 },
        server: { rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } },
      }),
    );
    // The replaying process's configuration, which the new version keeps: the same, one setting changed.
    writeFileSync(
      replayConfig,
      JSON.stringify({
        consolidation: { enabled: false },
        summarizer: { granularity: 'both', splitWords: 0 },
      }),
    );
  });

  after(async () => {
    await server?.stop();
    console.log(JSON.stringify({ timings }));
    dir.remove();
  });

  it('ingests the dialogues into v1: one memory per turn', { timeout: 15 * 60_000 }, async () => {
    const ingest = await timed(timings, 'ingest', async () =>
      cli(['ingest', dataset, '--format', 'locomo', '--json'], 15 * 60_000),
    );
    v1Memories = assertOneMemoryPerTurn(ingest, turns);
  });

  it(
    'a replay with the changed configuration, built by a running server, is killed -9 mid-way',
    { timeout: 10 * 60_000 },
    async () => {
      const started = performance.now();
      server = await startServer(dataDir, env);
      assert.equal(
        (await search()).filter((r) => r.kind === 'summary').length,
        0,
        'v1 has no segment summaries',
      );
      const replay = spawnCli(['replay', '--config', replayConfig, '--data-dir', dataDir, '--json'], env);
      const replayRun = collect(replay);
      /** v2's diff when it was found mid-way, and who was building it (the `/healthz` pipeline). */
      const midWay: { diff?: VersionDiff; owner: string } = { owner: '' };
      const seen = await untilMidBuild(replay, replayRun, {
        withinMs: 8 * 60_000,
        versions: async () => {
          const list = await api('GET', '/v1/replays');
          assert.equal(list.status, 200, JSON.stringify(list.body));
          return (list.body as { versions: ReplayStatus[] }).versions;
        },
        // Mid-way: v2 holds some memories, and has records left to process.
        midWay: async () => {
          const answer = await api('GET', '/v1/replays/v2/diff');
          assert.equal(answer.status, 200, JSON.stringify(answer.body));
          midWay.diff = answer.body as VersionDiff;
          midWay.owner = ((await api('GET', '/healthz')).body as { pipeline: string }).pipeline;
          return midWay.diff.after > 0;
        },
      });
      server.child.kill('SIGKILL');
      replay.kill('SIGKILL');
      const killed = await replayRun;
      await sleep(200);
      server = null;
      timings['replay until killed'] = seconds(started);
      console.log(`killed -9 mid-replay: ${JSON.stringify(seen)}, v2 held ${midWay.diff?.after} memories`);
      assertKilled(killed);
      assert.equal(midWay.owner, 'this process', 'the server, not the replay CLI, was building v2');
      v2AtKill = midWay.diff?.after ?? -1;

      // What the kill left: v2 building, beside v1 that serves reads.
      assertLeftBuilding(lastJsonLine(await cli(['replay', 'status', '--json'])) as ReplayStatus[], seen);
    },
  );

  it('run again, the replay resumes v2 (no v3) and finishes it', { timeout: 15 * 60_000 }, async () => {
    const started = performance.now();
    server = await startServer(dataDir, env);
    const result = await cli(['replay', '--config', replayConfig, '--json'], 15 * 60_000);
    const done = lastJsonLine(result) as ReplayStatus;
    timings['resume until built'] = seconds(started);
    assert.equal(done.version, 'v2', 'the building version is resumed, not a new one');
    assert.notEqual(done.builtAt, null);
    assert.equal(done.pending, 0);
    assert.equal(done.copied, done.rawRecords);
    assert.deepEqual(done.serves, [], 'without --switch reads stay on v1');
    const status = lastJsonLine(await cli(['replay', 'status', '--json'])) as ReplayStatus[];
    assert.deepEqual(
      status.map((v) => v.version),
      ['v1', 'v2'],
    );
    assert.ok(status.every((v) => v.builtAt !== null));
  });

  it(
    'the diff is the known effect of granularity=both, with no duplicate from the resume',
    {
      timeout: 5 * 60_000,
    },
    async () => {
      const diff = lastJsonLine(await cli(['replay', 'diff', 'v2', '--json'])) as VersionDiff;
      const v1 = await memoriesIn(join(dataDir, 'memories.db'));
      const v2 = await memoriesIn(join(dataDir, 'versions', 'v2', 'memories.db'));

      // The diff report.
      assertKnownGranularityDiff(diff, { v1Memories, v2, v2AtKill });
      assert.ok(v2AtKill > 0 && v2AtKill < diff.after, `the kill was mid-way (${v2AtKill} of ${diff.after})`);

      // The stores themselves: v2 = v1's turn memories, unchanged, plus summaries that cover every turn once.
      assert.equal(v1.length, v1Memories);
      assertTurnsKeptAndSummarized(v1, v2);
    },
  );

  it('switch under a search load: no failed request, reads flip to v2', { timeout: 5 * 60_000 }, async () => {
    const load = searchLoad(async () => {
      const answer = await api('POST', '/v1/search', searchBody());
      return { status: answer.status, results: (answer.body as { results?: SearchResult[] }).results };
    });
    const switchRun = await switchAfterWarmUp(async () => cli(['replay', 'switch', 'v2', '--json']));
    await sleep(2_000);
    // Some load after the server has seen the switch (it reads the registry at most every 250 ms).
    while (load.samples.filter((s) => s.start > switchRun.end + 1_000).length < 10) await sleep(100);
    await load.stop();

    assertSwitchedUnderLoad(load.samples, { ...switchRun, settleMs: 1_000 });
    const results = await search();
    const summary = results.find((r) => r.kind === 'summary');
    assert.ok(summary !== undefined && summary.sourceTurnIds.length > 0);
    console.log(`after the switch: ${JSON.stringify(summary).slice(0, 300)}`);
  });

  it('drops v1; refuses to drop v2, which serves reads', { timeout: 5 * 60_000 }, async () => {
    assertDropped(await cli(['replay', 'drop', 'v1', '--json']), 'v1');
    assertDropRefused(await cli(['replay', 'drop', 'v2', '--json']));
    const status = lastJsonLine(await cli(['replay', 'status', '--json'])) as ReplayStatus[];
    assert.deepEqual(
      status.map((v) => [v.version, v.serves]),
      [['v2', ['*']]],
    );
    assert.ok(
      (await search()).some((r) => r.kind === 'summary'),
      'reads still served by v2',
    );
  });
});
