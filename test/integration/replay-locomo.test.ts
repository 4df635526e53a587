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
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
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

/**
 * LoCoMo samples replayed: the first two of the dev file (conv-26 and conv-30, 788 of its 3,435 turns) by
 * default. The whole file (`LIGHTMEM_REPLAY_SAMPLES=all`) takes an ingest and a replay of ~3,400 turns each,
 * far beyond the suite's time budget on 2 cores.
 */
const samplesSetting = process.env['LIGHTMEM_REPLAY_SAMPLES'] ?? '2';
const tenant = 'default';
const searchUser = 'conv-26';
/** A query about conv-26 whose top results, once segment summaries exist, hold at least one of them. */
const searchQuery = 'Caroline and Melanie talk about painting, the LGBTQ support group and adoption';
const searchLimit = 20;

interface ReplayStatus {
  readonly version: string;
  readonly tenants: readonly string[] | null;
  readonly builtAt: string | null;
  readonly droppedAt: string | null;
  readonly serves: readonly string[];
  readonly copied: number;
  readonly rawRecords: number;
  readonly pending: number;
}

interface SearchResult {
  readonly kind: string;
  readonly sourceTurnIds: readonly string[];
  readonly speaker: string;
  readonly text: string;
}

/** One search request of the load: when it started and ended (ms since epoch), its status, the kinds found. */
interface Sample {
  readonly start: number;
  readonly end: number;
  readonly status: number | string;
  readonly kinds: readonly string[];
}

/** Every current memory of the tenant in a store file. */
async function memoriesIn(file: string): Promise<MemoryEntry[]> {
  assert.ok(existsSync(file), `no store at ${file}`);
  const store = SqliteMemoryStore.open(file);
  try {
    const all: MemoryEntry[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await store.list({
        scope: { tenantId: tenant },
        limit: 1000,
        cursor,
        includeSuperseded: false,
      });
      all.push(...page.items);
      if (page.nextCursor === null) return all;
      cursor = page.nextCursor;
    }
  } finally {
    await store.close();
  }
}

/** Where a turn comes from: user (= conversation in LoCoMo) and turn id. */
function turnKey(memory: MemoryEntry, turnId: string): string {
  return JSON.stringify([memory.userId, memory.conversationId, turnId]);
}

/** What a turn memory is, independent of the version that wrote it (ids hash the pipeline in). */
function factShape(memory: MemoryEntry): string {
  return JSON.stringify([
    memory.userId,
    memory.conversationId,
    memory.kind,
    memory.speaker,
    memory.sourceTurnIds,
    memory.text,
  ]);
}

/** A CLI run that must end within `ms` (killed and reported otherwise). */
async function finished(child: ChildProcess, ms: number, what: string): Promise<CliResult> {
  const result = collect(child);
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  try {
    const done = await result;
    assert.notEqual(done.signal, 'SIGKILL', `${what} did not end in ${ms / 1000} s:\n${done.stderr}`);
    return done;
  } finally {
    clearTimeout(timer);
  }
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
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
    const answer = await api('POST', '/v1/search', {
      query: searchQuery,
      userId: searchUser,
      limit: searchLimit,
    });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return (answer.body as { results: SearchResult[] }).results;
  };
  const cli = async (args: readonly string[], ms = 5 * 60_000): Promise<CliResult> =>
    finished(spawnCli([...args, '--data-dir', dataDir], env), ms, `lightmem ${args.join(' ')}`);

  before(async () => {
    await fetchModel();
    const samples = JSON.parse(readFileSync(locomoFile, 'utf8')) as {
      sample_id: string;
      conversation: Record<string, unknown>;
    }[];
    const used = samplesSetting === 'all' ? samples : samples.slice(0, Number(samplesSetting));
    assert.ok(used.length > 0 && used.some((s) => s.sample_id === searchUser), 'the samples hold conv-26');
    for (const sample of used) {
      for (const [key, value] of Object.entries(sample.conversation)) {
        if (/^session_\d+$/.test(key) && Array.isArray(value)) turns += value.length;
      }
    }
    writeFileSync(dataset, JSON.stringify(used));
    console.log(`LoCoMo dev: ${used.length} of ${samples.length} samples, ${turns} turns`);
    // Every process of the data dir without --config reads <dataDir>/config.json: no consolidation (see the
    // top of the file), and a rate limit the search load below cannot reach (a 429 is not what is tested).
    mkdirSync(dataDir);
    writeFileSync(
      join(dataDir, 'config.json'),
      JSON.stringify({
        consolidation: { enabled: false },
        server: { rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } },
      }),
    );
    // The replaying process's configuration, which the new version keeps: the same, one setting changed.
    writeFileSync(
      replayConfig,
      JSON.stringify({ consolidation: { enabled: false }, summarizer: { granularity: 'both' } }),
    );
  });

  after(async () => {
    await server?.stop();
    console.log(JSON.stringify({ timings }));
    dir.remove();
  });

  it('ingests the dialogues into v1: one memory per turn', { timeout: 15 * 60_000 }, async () => {
    const started = performance.now();
    const ingest = await cli(['ingest', dataset, '--format', 'locomo', '--json'], 15 * 60_000);
    const report = lastJsonLine(ingest) as {
      accepted: number;
      memories: { live: number; superseded: number };
    };
    timings['ingest'] = seconds(started);
    assert.equal(report.accepted, turns);
    v1Memories = report.memories.live;
    assert.equal(v1Memories, turns, 'granularity turn: one memory per turn');
    assert.equal(report.memories.superseded, 0);
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
      let seen: ReplayStatus | undefined;
      let diff: VersionDiff | undefined;
      let owner = '';
      const deadline = Date.now() + 8 * 60_000;
      for (;;) {
        if (replay.exitCode !== null) {
          assert.fail(`the replay ended before it was killed:\n${(await replayRun).stderr}`);
        }
        assert.ok(Date.now() < deadline, `v2 never got mid-way: ${JSON.stringify(seen)}`);
        const list = await api('GET', '/v1/replays');
        assert.equal(list.status, 200, JSON.stringify(list.body));
        seen = (list.body as { versions: ReplayStatus[] }).versions.find((v) => v.version === 'v2');
        if (seen !== undefined) {
          assert.equal(seen.builtAt, null, `v2 was built before it could be killed: ${JSON.stringify(seen)}`);
          if (seen.copied > 0 && seen.pending > 0) {
            // Mid-way: v2 holds some memories, and has records left to process.
            const answer = await api('GET', '/v1/replays/v2/diff');
            assert.equal(answer.status, 200, JSON.stringify(answer.body));
            diff = answer.body as VersionDiff;
            owner = ((await api('GET', '/healthz')).body as { pipeline: string }).pipeline;
            if (diff.after > 0) break;
          }
        }
        await sleep(100);
      }
      server.child.kill('SIGKILL');
      replay.kill('SIGKILL');
      const killed = await replayRun;
      await sleep(200);
      server = null;
      timings['replay until killed'] = seconds(started);
      console.log(`killed -9 mid-replay: ${JSON.stringify(seen)}, v2 held ${diff?.after} memories`);
      assert.equal(killed.signal, 'SIGKILL');
      assert.equal(killed.stdout, '', 'the killed replay printed no result');
      assert.equal(owner, 'this process', 'the server, not the replay CLI, was building v2');
      v2AtKill = diff?.after ?? -1;

      // What the kill left: v2 building, beside v1 that serves reads.
      const status = lastJsonLine(await cli(['replay', 'status', '--json'])) as ReplayStatus[];
      assert.deepEqual(
        status.map((v) => [v.version, v.builtAt === null, v.serves]),
        [
          ['v1', false, ['*']],
          ['v2', true, []],
        ],
      );
      const copied = status.find((v) => v.version === 'v2')?.copied ?? 0;
      assert.ok(copied >= (seen?.copied ?? 0), `v2's copy cursor survived the kill (${copied})`);
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
      const summaries = v2.filter((m) => m.kind === 'summary');
      console.log(
        `diff ${JSON.stringify({ ...diff, samples: undefined })}; v2 held ${v2AtKill} memories when killed`,
      );

      // The diff report.
      assert.equal(diff.from, 'v1');
      assert.equal(diff.to, 'v2');
      assert.deepEqual(diff.tenants, [tenant]);
      assert.equal(diff.before, v1Memories);
      assert.equal(diff.changed, 0, 'turn memories are the same with granularity both');
      assert.equal(diff.removed, 0);
      // Each v1 memory cites its own turn: one group each, all found unchanged in v2.
      assert.equal(diff.unchanged, v1Memories);
      assert.ok(diff.added > 0, 'segment summaries were added');
      assert.equal(diff.after, diff.before + diff.added, 'one memory per added group, nothing twice');
      assert.equal(diff.added, summaries.length);
      assert.ok(v2AtKill > 0 && v2AtKill < diff.after, `the kill was mid-way (${v2AtKill} of ${diff.after})`);
      assert.equal(diff.samples.changed.length, 0);
      assert.equal(diff.samples.removed.length, 0);
      assert.ok(diff.samples.added.length > 0);
      for (const sample of diff.samples.added) {
        assert.equal(sample.before, undefined);
        assert.ok(sample.after !== undefined && sample.sourceTurnIds.length > 0, JSON.stringify(sample));
        // A segment summary: one "speaker: text" line per cited turn.
        assert.match(sample.after, /^[A-Z][\w .'-]*: /, sample.after);
      }
      assert.ok(
        diff.samples.added.some((s) => s.sourceTurnIds.length > 1 && s.after?.includes('\n') === true),
        'an added summary cites several turns',
      );

      // The stores themselves: v2 = v1's turn memories, unchanged, plus summaries that cover every turn once.
      assert.equal(v1.length, v1Memories);
      assert.deepEqual(
        v2
          .filter((m) => m.kind !== 'summary')
          .map(factShape)
          .sort(),
        v1.map(factShape).sort(),
      );
      assert.equal(new Set(v2.map((m) => m.id)).size, v2.length, 'no memory id twice in v2');
      const facts = new Map(v1.map((m) => [turnKey(m, m.sourceTurnIds[0] ?? ''), m]));
      const covered = new Map<string, number>();
      for (const summary of summaries) {
        const cited = summary.sourceTurnIds.map((turnId) => facts.get(turnKey(summary, turnId)));
        assert.ok(
          cited.every((m) => m !== undefined),
          `a summary cites turns v1 does not have: ${summary.sourceTurnIds.join(',')}`,
        );
        assert.equal(
          summary.text,
          cited.map((m) => `${m?.speaker}: ${m?.text}`).join('\n'),
          'a summary is its turns, one line each',
        );
        for (const turnId of summary.sourceTurnIds) {
          const key = turnKey(summary, turnId);
          covered.set(key, (covered.get(key) ?? 0) + 1);
        }
      }
      assert.equal(covered.size, facts.size, 'every turn is in a summary');
      const twice = [...covered].filter(([, n]) => n > 1);
      assert.deepEqual(twice.slice(0, 5), [], `${twice.length} turns are in two summaries`);
    },
  );

  it('switch under a search load: no failed request, reads flip to v2', { timeout: 5 * 60_000 }, async () => {
    const samples: Sample[] = [];
    let stop = false;
    const loop = async (): Promise<void> => {
      while (!stop) {
        const start = Date.now();
        try {
          const answer = await api('POST', '/v1/search', {
            query: searchQuery,
            userId: searchUser,
            limit: searchLimit,
          });
          samples.push({
            start,
            end: Date.now(),
            status: answer.status,
            kinds: ((answer.body as { results?: SearchResult[] }).results ?? []).map((r) => r.kind),
          });
        } catch (error) {
          samples.push({ start, end: Date.now(), status: String(error), kinds: [] });
        }
      }
    };
    const loops = [0, 1, 2, 3].map(loop);
    await sleep(2_000);
    const switchStart = Date.now();
    const switched = await cli(['replay', 'switch', 'v2', '--json']);
    const switchEnd = Date.now();
    await sleep(2_000);
    // Some load after the server has seen the switch (it reads the registry at most every 250 ms).
    while (samples.filter((s) => s.start > switchEnd + 1_000).length < 10) await sleep(100);
    stop = true;
    await Promise.all(loops);

    const status = lastJsonLine(switched) as ReplayStatus;
    assert.equal(status.version, 'v2');
    assert.deepEqual(status.serves, ['*']);
    const failed = samples.filter((s) => s.status !== 200);
    const beforeSwitch = samples.filter((s) => s.end < switchStart);
    const afterSwitch = samples.filter((s) => s.start > switchEnd + 1_000);
    const summaryIn = (s: Sample): boolean => s.kinds.includes('summary');
    console.log(
      JSON.stringify({
        requests: samples.length,
        failed: failed.length,
        beforeSwitch: beforeSwitch.length,
        duringSwitch: samples.length - beforeSwitch.length - afterSwitch.length,
        afterSwitch: afterSwitch.length,
        switchMs: switchEnd - switchStart,
      }),
    );
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${samples.length} requests failed`);
    assert.ok(beforeSwitch.length > 0 && afterSwitch.length > 0);
    assert.ok(
      beforeSwitch.every((s) => !summaryIn(s) && s.kinds.length > 0),
      'v1 served reads before',
    );
    assert.ok(
      afterSwitch.every(summaryIn),
      `v2 serves reads after: ${afterSwitch.filter((s) => !summaryIn(s)).length} answers without a summary`,
    );
    const results = await search();
    const summary = results.find((r) => r.kind === 'summary');
    assert.ok(summary !== undefined && summary.sourceTurnIds.length > 0);
    console.log(`after the switch: ${JSON.stringify(summary).slice(0, 300)}`);
  });

  it('drops v1; refuses to drop v2, which serves reads', { timeout: 5 * 60_000 }, async () => {
    const dropped = lastJsonLine(await cli(['replay', 'drop', 'v1', '--json'])) as ReplayStatus;
    assert.equal(dropped.version, 'v1');
    assert.notEqual(dropped.droppedAt, null);
    const refused = await cli(['replay', 'drop', 'v2', '--json']);
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.match(refused.stderr, /v2 serves reads/);
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
