// Replay in distributed mode (real Kafka, schema registry and Elasticsearch, the five stages as
// `lightmem service <stage>` processes, the real embedding model): the distributed twin of
// replay-locomo.test.ts, through the same CLI and HTTP surface.
//
// The change is the embedded test's: `summarizer.granularity` from `turn` (one memory per turn) to `both`
// (the same turn memories, plus one `summary` memory per topic segment citing the segment's turns), whose
// effect on the diff is known exactly: every group of v1 is unchanged, nothing is changed or removed, and
// the added groups are the segment summaries. The replaying CLI and two stage services are killed with
// SIGKILL mid-build, then started again; the replay resumes v2 and the result must be that known answer
// (which an uninterrupted run gives too: nothing lost, nothing twice). Then: switch under a search load
// through `lightmem serve`, erase a user from both versions, drop v1.
//
// How distributed replay works (what this test holds it to): version N > 1 keeps its topics under
// `<kafka.topicPrefix>vN.` and its memories under `<elasticsearch.indexPrefix>vN-`; version 1 is the
// deployment's own topics and indices (the plain prefixes). The registry of versions is an Elasticsearch
// document. The stage services run version 1 and every later version that is building or serves reads, and
// notice a new version by themselves; the compressor service copies v1's raw log into vN's and marks vN
// built once every stage of it has caught up. `lightmem replay` only creates (or resumes) the version and
// shows its progress until it is built: in distributed mode it runs no stage.
//
// Consolidation is off in both configurations (with it on, near-duplicates merge at times that depend on
// when the runs happen, and the diff would have no known answer); so is the LLM (the extractive
// summarizer: the known answer needs the turns themselves as memories). The two configuration files differ
// in `summarizer.granularity` only.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@elastic/elasticsearch';
import { ElasticsearchMemoryStore } from '../../services/adapters/elasticsearch/elasticsearch-memory-store.js';
import { indexNames } from '../../services/adapters/elasticsearch/es-mapping.js';
import type { ReplayStatus } from '../../services/app/replays.js';
import type { ErasureReceipt } from '../../services/app/user-erasure.js';
import type { VersionDiff } from '../../services/app/version-diff.js';
import type { LightmemConfigInput } from '../../services/core/config.js';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import { apiClient, type ApiClient } from '../support/api-client.js';
import { collect, lastJsonLine, spawnCli, tempDir, type CliResult } from '../support/cli.js';
import {
  distributedConfig,
  locomoSubset,
  modelEnv,
  startStages,
  stopStages,
  writeConfig,
  type Stage,
  type StageProcess,
} from './support/distributed.js';
import { deletePrefix } from './support/elasticsearch.js';
import { fetchModel } from './support/models.js';
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
  factShape,
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
import { serve, type RunningServer } from './support/serve.js';
import { deleteTopics, servers, testKafka } from './support/servers.js';

/**
 * LoCoMo samples ingested and replayed: the first two of the dev file (conv-26 and conv-30, 788 turns) by
 * default; LIGHTMEM_REPLAY_SAMPLES=N for another count. Two, not one: conv-30 is the user erased below,
 * conv-26 the one searched (and kept) to the end. At ~15 turns/s through the stage services on 2 cores,
 * the ingest and the replay take a minute or two each.
 */
const sampleCount = Number(process.env['LIGHTMEM_REPLAY_SAMPLES'] ?? '2');
/** The user erased from both versions (the one searched throughout is `searchUser`, conv-26). */
const erasedUser = 'conv-30';
/**
 * How long after `lightmem replay switch` returned a search may still be answered by v1: the serving
 * process reads the registry at most every 250 ms; a few seconds of margin for a loaded 2-core machine.
 */
const switchSettleMs = 5_000;
/** The stage services killed with SIGKILL mid-replay: the copy's owner and a stage in the middle. */
const killedStages: readonly Stage[] = ['compressor', 'summarizer'];

describe('replay in distributed mode of LoCoMo into a version with summarizer.granularity=both', () => {
  const dir = tempDir('replay-distributed');
  // Both files name the same servers and prefixes; the replay's differs in the one setting.
  const config = distributedConfig('replay', {
    // One memory per turn (no sentence chunks): the known answer needs the turns themselves as memories.
    summarizer: { extractor: 'extractive', splitWords: 0 },
    // A rate limit the search load below cannot reach (a 429 is not what is tested).
    server: { rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } },
  });
  const replayConfig: LightmemConfigInput = {
    ...config,
    summarizer: { ...config.summarizer, granularity: 'both' },
  };
  const file = writeConfig(dir.path, 'replay-distributed', config);
  const replayFile = writeConfig(dir.path, 'replay-distributed-both', replayConfig);
  const topicPrefix = config.kafka?.topicPrefix ?? '';
  const indexPrefix = config.elasticsearch?.indexPrefix ?? '';
  /** Where a version keeps its memories: v1 under the deployment's own prefix, vN under `<prefix>vN-`. */
  const indexPrefixOf = (version: string): string =>
    version === 'v1' ? indexPrefix : `${indexPrefix}${version}-`;
  const env = modelEnv();
  const es = new Client({ node: servers.elasticsearchUrl });
  const timings: Record<string, string> = {};
  /** Every CLI child started here, so `after` can kill one a failed assertion left running. */
  const children = new Set<ChildProcess>();
  let stages = new Map<Stage, StageProcess>();
  let server: RunningServer | null = null;
  let client: ApiClient | null = null;
  let apiKey = '';
  let dataset = '';
  let turns = 0;
  let v1Memories = 0;
  /** v2's memories in Elasticsearch when its build was killed. */
  let v2AtKill = -1;

  const spawn = (args: readonly string[]): ChildProcess => {
    const child = spawnCli(args, env);
    children.add(child);
    child.once('close', () => children.delete(child));
    return child;
  };
  /** `lightmem <args> --config <the deployment's file>`, bounded in time. */
  const cli = async (args: readonly string[], ms = 5 * 60_000): Promise<CliResult> =>
    finishedWithin(spawn([...args, '--config', file]), ms, `lightmem ${args.join(' ')}`);
  const api = (): ApiClient => {
    assert.ok(client !== null, 'no server');
    return client;
  };
  const search = async (userId = searchUser): Promise<SearchResult[]> => {
    const answer = await api().post<{ results: SearchResult[] }>('/v1/search', searchBody(userId));
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    return answer.json.results;
  };
  const replayStatus = async (): Promise<ReplayStatus[]> =>
    lastJsonLine(await cli(['replay', 'status', '--json'])) as ReplayStatus[];
  const stageProcess = (stage: Stage): StageProcess => {
    const found = stages.get(stage);
    assert.ok(found !== undefined, `no ${stage} service`);
    return found;
  };
  /** The last lines of every stage service's log, for failure messages. */
  const stageLogs = (): string =>
    [...stages.values()]
      .map(
        (stage) =>
          `--- ${stage.stage} (${stage.alive ? 'alive' : 'not running'}):\n${stage.log.slice(-2_000)}`,
      )
      .join('\n');
  const assertStagesAlive = (): void => {
    const dead = [...stages.values()].filter((stage) => !stage.alive);
    assert.deepEqual(
      dead.map((stage) => stage.stage),
      [],
      `stage services died:\n${stageLogs()}`,
    );
  };
  /** Every current memory of the tenant (or of one user) in a version's Elasticsearch store. */
  const memoriesOf = async (version: string, userId?: string): Promise<MemoryEntry[]> => {
    const store = await ElasticsearchMemoryStore.open({
      node: servers.elasticsearchUrl,
      indexPrefix: indexPrefixOf(version),
    });
    try {
      return await currentMemories(store, { tenantId: tenant, ...(userId === undefined ? {} : { userId }) });
    } finally {
      await store.close();
    }
  };
  /**
   * The tenant's documents in a version's memory indices, read raw (opening a store would create the
   * indices of a dropped version again); 0 when the indices are gone.
   */
  const documentsIn = async (version: string): Promise<number> => {
    const answer = await es.count({
      index: indexNames(indexPrefixOf(version)).pattern,
      query: { term: { tenantId: tenant } },
      allow_no_indices: true,
      ignore_unavailable: true,
    });
    return answer.count;
  };

  before(async () => {
    await fetchModel();
    assert.ok(topicPrefix !== '' && indexPrefix !== '', 'distributedConfig names its own prefixes');
    dataset = locomoSubset(dir.path, sampleCount);
    const samples = JSON.parse(readFileSync(dataset, 'utf8')) as LocomoSample[];
    turns = turnsOf(samples);
    const users = samples.map((sample) => sample.sample_id);
    assert.ok(
      users.includes(searchUser) && users.includes(erasedUser),
      `the samples hold ${users.join(', ')}`,
    );
    console.log(`LoCoMo dev: ${users.length} samples (${users.join(', ')}), ${turns} turns`);

    const init = await cli(['admin', 'init']);
    assert.equal(init.code, 0, init.stderr);
    // The tenant the LoCoMo turns are ingested under, with an admin key for the API (search, erase).
    const created = lastJsonLine(await cli(['tenant', 'create', tenant, '--json'])) as { apiKey: string };
    apiKey = created.apiKey;
    stages = await startStages(file, env);
  });

  after(async () => {
    await server?.stop().catch((error: unknown) => console.error(`# serve: ${String(error)}`));
    await stopStages(stages).catch(() => undefined);
    for (const child of children) child.kill('SIGKILL');
    await deleteTopics({ prefix: topicPrefix, partitions: 3, replicationFactor: 1 }).catch(() => undefined);
    await deletePrefix(es, indexPrefix).catch(() => undefined);
    await es.close();
    console.log(JSON.stringify({ timings }));
    dir.remove();
  });

  it(
    'ingests the dialogues into v1 through the stage services: one memory per turn',
    { timeout: 10 * 60_000 },
    async () => {
      const ingest = await timed(timings, 'ingest', async () =>
        cli(['ingest', dataset, '--format', 'locomo', '--json'], 10 * 60_000),
      );
      v1Memories = assertOneMemoryPerTurn(ingest, turns);
      assertStagesAlive();

      server = await serve(join(dir.path, 'serve'), env, 120_000, 60_000, ['--config', file]);
      client = apiClient(server.base, apiKey);
      const results = await search();
      assert.ok(results.length > 0, 'v1 answers searches through serve');
      assert.equal(results.filter((r) => r.kind === 'summary').length, 0, 'v1 has no segment summaries');
    },
  );

  it(
    'a replay with the changed configuration is killed -9 mid-build, with two of the stage services',
    { timeout: 8 * 60_000 },
    async () => {
      const started = performance.now();
      const replay = spawn(['replay', '--config', replayFile, '--json']);
      const replayRun = collect(replay);
      // Mid-way: the copy has begun, and the stages have records left to process.
      const seen = await untilMidBuild(replay, replayRun, {
        withinMs: 6 * 60_000,
        versions: async () => {
          const list = await api().get<{ versions: ReplayStatus[] }>('/v1/replays');
          assert.equal(list.status, 200, JSON.stringify(list.json));
          return list.json.versions;
        },
        check: assertStagesAlive,
        detail: stageLogs,
      });
      // The stage services first: from here on v2 cannot be built (its copy stops, the compressor that marks
      // it built is down, and so is its summarizer, with records left).
      await Promise.all(killedStages.map(async (stage) => stageProcess(stage).kill9()));
      replay.kill('SIGKILL');
      const killed = await replayRun;
      v2AtKill = await documentsIn('v2');
      timings['replay until killed'] = seconds(started);
      console.log(`killed -9 mid-replay: ${JSON.stringify(seen)}, v2 held ${v2AtKill} memories`);
      assertKilled(killed);

      // What the kill left: v2 building beside v1, which serves reads; the copy cursor kept.
      assertLeftBuilding(await replayStatus(), seen);
      assert.ok(
        (await search()).every((r) => r.kind !== 'summary'),
        'reads stay on v1 while v2 builds',
      );
    },
  );

  it('run again, the replay resumes v2 (no v3) and finishes it', { timeout: 10 * 60_000 }, async () => {
    const started = performance.now();
    // Without --json the replay shows its progress on stderr, from its first look at the version: the
    // line names the version it created or resumed. The killed stage services start again only once it
    // has resumed v2, so v2 was still building when it did (see the kill above).
    const replay = spawn(['replay', '--config', replayFile]);
    const replayRun = finishedWithin(replay, 10 * 60_000, 'lightmem replay (resumed)');
    // Awaited below; handled here too, so a failure before that is not reported twice.
    replayRun.catch(() => undefined);
    let progress = '';
    replay.stderr?.on('data', (chunk: Buffer) => (progress += chunk.toString()));
    const deadline = Date.now() + 3 * 60_000;
    while (!/^replay v\d+ /m.test(progress)) {
      assert.ok(replay.exitCode === null, `the replay ended without progress:\n${progress}`);
      assert.ok(Date.now() < deadline, `no progress line from the resumed replay:\n${progress}`);
      await sleep(100);
    }
    assert.match(progress, /^replay v2 /m, 'the building version is resumed, not a new one');
    for (const stage of killedStages) stageProcess(stage).start();

    const result = await replayRun;
    timings['resume until built'] = seconds(started);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.trim().split('\n').at(-1) ?? '', /^v2 {2}tenants all {2}built \S+$/);
    assertStagesAlive();

    const status = await replayStatus();
    assert.deepEqual(
      status.map((v) => v.version),
      ['v1', 'v2'],
    );
    assert.ok(
      status.every((v) => v.builtAt !== null),
      JSON.stringify(status),
    );
    const v2 = status.find((v) => v.version === 'v2');
    assert.ok(v2 !== undefined);
    assert.equal(v2.pending, 0);
    assert.ok(v2.rawRecords > 0, JSON.stringify(v2));
    assert.equal(v2.copied, v2.rawRecords, 'the whole raw log was copied');
    assert.deepEqual(v2.serves, [], 'without --switch reads stay on v1');
    assert.deepEqual(status.find((v) => v.version === 'v1')?.serves, ['*']);
  });

  it(
    'the diff is the known effect of granularity=both, with no duplicate from the kills',
    { timeout: 5 * 60_000 },
    async () => {
      const diff = lastJsonLine(await cli(['replay', 'diff', 'v2', '--json'])) as VersionDiff;
      const v1 = await memoriesOf('v1');
      const v2 = await memoriesOf('v2');

      // The diff report.
      assertKnownGranularityDiff(diff, { v1Memories, v2, v2AtKill });
      assert.ok(v2AtKill < diff.after, `the kill was before the end (${v2AtKill} of ${diff.after})`);

      // The stores themselves: v2 = v1's turn memories, unchanged, plus summaries that cover every turn once.
      assert.equal(v1.length, v1Memories, `v1's memories are in the indices under ${indexPrefixOf('v1')}`);
      assertTurnsKeptAndSummarized(v1, v2);
      const v1Ids = new Set(v1.map((m) => m.id));
      assert.equal(
        v2.filter((m) => v1Ids.has(m.id)).length,
        0,
        "v2's ids are its own (the pipeline version is in every id)",
      );
    },
  );

  it(
    'switch under a search load through serve: no failed request, reads flip to v2',
    { timeout: 5 * 60_000 },
    async () => {
      const load = searchLoad(async () => {
        const answer = await api().post<{ results?: SearchResult[] }>('/v1/search', searchBody());
        return { status: answer.status, results: answer.json.results };
      });
      const switchRun = await switchAfterWarmUp(async () => cli(['replay', 'switch', 'v2', '--json']));
      // Some load after serve has surely seen the switch.
      const deadline = Date.now() + 2 * 60_000;
      while (load.samples.filter((s) => s.start > switchRun.end + switchSettleMs).length < 10) {
        assert.ok(Date.now() < deadline, `the load stalled: ${load.samples.length} requests`);
        await sleep(100);
      }
      await load.stop();

      assertSwitchedUnderLoad(load.samples, { ...switchRun, settleMs: switchSettleMs });
      const summary = (await search()).find((r) => r.kind === 'summary');
      assert.ok(summary !== undefined && summary.sourceTurnIds.length > 0);
      console.log(`after the switch: ${JSON.stringify(summary).slice(0, 300)}`);
      const status2 = await replayStatus();
      assert.deepEqual(
        status2.map((v) => [v.version, v.serves]),
        [
          ['v1', []],
          ['v2', ['*']],
        ],
      );
    },
  );

  it(
    'erasing a user removes them from both versions, and keeps everyone else',
    { timeout: 5 * 60_000 },
    async () => {
      const inV1 = await memoriesOf('v1', erasedUser);
      const inV2 = await memoriesOf('v2', erasedUser);
      const keptV1 = (await memoriesOf('v1', searchUser)).length;
      const keptV2 = (await memoriesOf('v2', searchUser)).length;
      assert.ok(inV1.length > 0, `${erasedUser} has memories in v1`);
      assert.ok(
        inV2.some((m) => m.kind === 'summary') && inV2.length > inV1.length,
        `${erasedUser} has turn memories and summaries in v2`,
      );
      assert.ok((await search(erasedUser)).length > 0, `${erasedUser} is found before the erasure`);

      const answer = await timed(timings, 'erasure', async () =>
        api().delete<ErasureReceipt>(`/v1/users/${erasedUser}`),
      );
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      const receipt = answer.json;
      console.log(`erasure of ${erasedUser}: ${JSON.stringify(receipt.removed)}`);
      assert.equal(receipt.tenantId, tenant);
      assert.equal(receipt.userId, erasedUser);
      assert.equal(receipt.tombstone, true);
      const fromStores = receipt.removed.find((entry) => entry.where === 'memory-store')?.count ?? 0;
      assert.ok(
        fromStores >= inV1.length + inV2.length,
        `the receipt counts both versions' memories (${fromStores} of ${inV1.length} + ${inV2.length})`,
      );

      // Nothing of the user in either version's indices, nor in what serve answers.
      assert.deepEqual(await memoriesOf('v1', erasedUser), [], `${erasedUser} is gone from v1`);
      assert.deepEqual(await memoriesOf('v2', erasedUser), [], `${erasedUser} is gone from v2`);
      assert.deepEqual(await search(erasedUser), []);
      // Everyone else stays.
      assert.equal((await memoriesOf('v1', searchUser)).length, keptV1);
      assert.equal((await memoriesOf('v2', searchUser)).length, keptV2);
      assert.ok((await search()).some((r) => r.kind === 'summary'));

      // The stage services run v2 (it serves reads): nothing they do brings the user back.
      await sleep(5_000);
      assert.deepEqual(await memoriesOf('v2', erasedUser), [], `${erasedUser} stays gone from v2`);
      assertStagesAlive();
    },
  );

  it(
    'drops v1, whose memories leave its indices; refuses to drop v2, which serves reads',
    { timeout: 5 * 60_000 },
    async () => {
      const keptV2 = (await memoriesOf('v2', searchUser)).length;
      assert.ok((await documentsIn('v1')) > 0, 'v1 holds memories before the drop');

      assertDropped(await cli(['replay', 'drop', 'v1', '--json']), 'v1');
      assert.equal(await documentsIn('v1'), 0, "v1's memories are gone from its indices");

      assertDropRefused(await cli(['replay', 'drop', 'v2', '--json']));

      const status = await replayStatus();
      assert.deepEqual(
        status.map((v) => [v.version, v.serves]),
        [['v2', ['*']]],
      );
      assert.equal((await memoriesOf('v2', searchUser)).length, keptV2, 'v2 is untouched');
      assert.deepEqual(await memoriesOf('v2', erasedUser), []);
      assert.ok(
        (await search()).some((r) => r.kind === 'summary'),
        'reads still served by v2',
      );
      assertStagesAlive();
    },
  );

  it(
    'a later replay does not bring the erased user back; dropping it deletes its topics, groups and indices',
    { timeout: 8 * 60_000 },
    async () => {
      const keptV2 = (await memoriesOf('v2', searchUser)).filter((m) => m.kind !== 'summary');
      // The deployment's own configuration again (granularity turn), into a third version.
      const replay = await cli(['replay', '--json'], 6 * 60_000);
      assert.equal(replay.code, 0, replay.stderr);
      const built = lastJsonLine(replay) as ReplayStatus;
      assert.equal(built.version, 'v3');
      assert.notEqual(built.builtAt, null);
      assert.deepEqual(await memoriesOf('v3', erasedUser), [], `${erasedUser} does not come back in v3`);
      const inV3 = await memoriesOf('v3', searchUser);
      assert.deepEqual(
        inV3.map(factShape).sort(),
        keptV2.map(factShape).sort(),
        `v3 re-derives ${searchUser}'s turn memories, as v2 made them`,
      );

      const kafka = testKafka('replay-distributed-check');
      const admin = kafka.admin();
      await admin.connect();
      try {
        const v3Topics = async (): Promise<string[]> =>
          (await admin.listTopics()).filter((name) => name.startsWith(`${topicPrefix}v3.`));
        const v3Groups = async (): Promise<string[]> =>
          (await admin.listGroups()).groups
            .map((group) => group.groupId)
            .filter((id) => id.startsWith(`${topicPrefix}v3.`));
        assert.ok((await v3Topics()).length > 0, 'v3 has topics of its own');
        assert.ok((await v3Groups()).length > 0, 'v3 has consumer groups of its own');
        assert.ok((await documentsIn('v3')) > 0);

        const dropped = lastJsonLine(await cli(['replay', 'drop', 'v3', '--json'])) as ReplayStatus;
        assert.notEqual(dropped.droppedAt, null);
        assert.deepEqual(await v3Topics(), [], "v3's topics are deleted");
        assert.deepEqual(await v3Groups(), [], "v3's consumer groups are deleted");
        const indices = await es.indices.get(
          { index: `${indexPrefixOf('v3')}*`, allow_no_indices: true },
          { ignore: [404] },
        );
        assert.deepEqual(Object.keys(indices), [], "v3's indices are deleted");
      } finally {
        await admin.disconnect();
      }
      // v2 serves on, untouched.
      assert.ok((await search()).some((r) => r.kind === 'summary'));
      assertStagesAlive();
    },
  );

  it(
    'a replay --since after every session re-derives nothing: it carries the serving memories over',
    { timeout: 5 * 60_000 },
    async () => {
      const serving = (await memoriesOf('v2', searchUser)).map((m) => m.id).sort();
      // No LoCoMo turn is this recent: no session is active since then, every memory is carried over.
      const replay = await cli(['replay', '--since', '2030-01-01T00:00:00Z', '--json'], 4 * 60_000);
      assert.equal(replay.code, 0, replay.stderr);
      const built = lastJsonLine(replay) as ReplayStatus;
      assert.equal(built.version, 'v4');
      assert.equal(built.since, '2030-01-01T00:00:00.000Z');
      assert.equal(built.pending, 0);
      assert.deepEqual(
        (await memoriesOf('v4', searchUser)).map((m) => m.id).sort(),
        serving,
        `v4 holds v2's memories of ${searchUser}, with their ids (summaries included)`,
      );
      assert.deepEqual(await memoriesOf('v4', erasedUser), [], `${erasedUser} is not carried over`);
      const admin = testKafka('replay-distributed-since').admin();
      await admin.connect();
      try {
        const offsets = await admin.fetchTopicOffsets(`${topicPrefix}v4.lightmem.turns.raw`);
        assert.equal(
          offsets.reduce((sum, partition) => sum + Number(partition.high), 0),
          0,
          'no raw record was copied: none is of a session active since then',
        );
      } finally {
        await admin.disconnect();
      }
      const dropped = lastJsonLine(await cli(['replay', 'drop', 'v4', '--json'])) as ReplayStatus;
      assert.notEqual(dropped.droppedAt, null);
      assertStagesAlive();
    },
  );
});
