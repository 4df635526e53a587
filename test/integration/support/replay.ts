// What the two replay tests share (replay-locomo.test.ts, embedded; replay-distributed.test.ts, its
// distributed twin): LoCoMo dialogues replayed into v2 with `summarizer.granularity` changed from `turn` to
// `both`, whose effect is known exactly (v1's turn memories unchanged, plus one `summary` memory per topic
// segment citing the segment's turns); a kill mid-build, the resume, the diff, and the switch under a search
// load.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReplayStatus } from '../../../services/app/replays.js';
import type { VersionDiff } from '../../../services/app/version-diff.js';
import type { MemoryEntry } from '../../../services/core/model/generated.js';
import type { Scope } from '../../../services/core/model/scope.js';
import type { MemoryStore } from '../../../services/core/ports/memory-store.js';
import { collect, lastJsonLine, type CliResult } from '../../support/cli.js';

/** The tenant the LoCoMo turns are ingested under. */
export const tenant = 'default';
/** The user searched throughout (a LoCoMo sample id is its conversation's user id). */
export const searchUser = 'conv-26';
/** A query about conv-26 whose top results, once segment summaries exist, hold at least one of them. */
export const searchQuery = 'Caroline and Melanie talk about painting, the LGBTQ support group and adoption';
export const searchLimit = 20;

/** The body of a `POST /v1/search` for the search query, about one user. */
export function searchBody(userId = searchUser): { query: string; userId: string; limit: number } {
  return { query: searchQuery, userId, limit: searchLimit };
}

/** A result of `POST /v1/search` (what the tests look at). */
export interface SearchResult {
  readonly id: string;
  readonly kind: string;
  readonly sourceTurnIds: readonly string[];
  readonly speaker: string;
  readonly text: string;
  readonly userId: string;
}

/** One search request of the load: when it started and ended (ms since epoch), its status, the kinds found. */
export interface Sample {
  readonly start: number;
  readonly end: number;
  readonly status: number | string;
  readonly kinds: readonly string[];
}

/** A LoCoMo sample, as much of it as the tests read. */
export interface LocomoSample {
  readonly sample_id: string;
  readonly conversation: Record<string, unknown>;
}

/** The turns of LoCoMo samples (their `session_N` arrays). */
export function turnsOf(samples: readonly Pick<LocomoSample, 'conversation'>[]): number {
  let turns = 0;
  for (const sample of samples) {
    for (const [key, value] of Object.entries(sample.conversation)) {
      if (/^session_\d+$/.test(key) && Array.isArray(value)) turns += value.length;
    }
  }
  return turns;
}

/** Where the turn a memory cites comes from: user (= conversation in LoCoMo) and turn id. */
export function turnKey(memory: MemoryEntry, turnId: string): string {
  return JSON.stringify([memory.userId, memory.conversationId, turnId]);
}

/** What a turn memory is, independent of the version that wrote it (ids hash the pipeline in). */
export function factShape(memory: MemoryEntry): string {
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
export async function finishedWithin(child: ChildProcess, ms: number, what: string): Promise<CliResult> {
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

/** Seconds since `since` (a `performance.now()`), one decimal, for the timings logged. */
export function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

/** Runs `run`; once it has succeeded, records its seconds in `timings` under `name`. */
export async function timed<T>(
  timings: Record<string, string>,
  name: string,
  run: () => Promise<T>,
): Promise<T> {
  const started = performance.now();
  const result = await run();
  timings[name] = seconds(started);
  return result;
}

/** Every current memory of a scope in a store, page by page. */
export async function currentMemories(
  store: Pick<MemoryStore, 'list'>,
  scope: Scope,
): Promise<MemoryEntry[]> {
  const all: MemoryEntry[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await store.list({ scope, limit: 1000, cursor, includeSuperseded: false });
    all.push(...page.items);
    if (page.nextCursor === null) return all;
    cursor = page.nextCursor;
  }
}

/**
 * The report of `lightmem ingest --json` with granularity turn: every turn accepted, one live memory each,
 * none superseded. Returns the live memories.
 */
export function assertOneMemoryPerTurn(ingest: CliResult, turns: number): number {
  const report = lastJsonLine(ingest) as {
    accepted: number;
    memories: { live: number; superseded: number };
  };
  assert.equal(report.accepted, turns);
  assert.equal(report.memories.live, turns, 'granularity turn: one memory per turn');
  assert.equal(report.memories.superseded, 0);
  return report.memories.live;
}

/**
 * Polls the versions every 100 ms until v2 is mid-build (it holds some of the copy, and has records left
 * to process) and `midWay`, when given, agrees; returns v2's status then. Fails when the replay ends first,
 * when v2 gets built first, or after `withinMs`.
 */
export async function untilMidBuild(
  replay: ChildProcess,
  /** The replay's run (its `collect`), for its output when it ends. */
  run: Promise<CliResult>,
  options: {
    readonly withinMs: number;
    readonly versions: () => Promise<readonly ReplayStatus[]>;
    /** Checked each round, before the time limit (e.g. that the stage services live). */
    readonly check?: () => void;
    /** What to add to the failure when v2 never gets mid-way. */
    readonly detail?: () => string;
    /** Whether v2, mid-build, is far enough to be killed. */
    readonly midWay?: (v2: ReplayStatus) => Promise<boolean>;
  },
): Promise<ReplayStatus> {
  let seen: ReplayStatus | undefined;
  const deadline = Date.now() + options.withinMs;
  for (;;) {
    if (replay.exitCode !== null) {
      assert.fail(`the replay ended before it was killed:\n${(await run).stderr}`);
    }
    options.check?.();
    assert.ok(
      Date.now() < deadline,
      `v2 never got mid-way: ${JSON.stringify(seen)}${options.detail === undefined ? '' : `\n${options.detail()}`}`,
    );
    seen = (await options.versions()).find((v) => v.version === 'v2');
    if (seen !== undefined) {
      assert.equal(seen.builtAt, null, `v2 was built before it could be killed: ${JSON.stringify(seen)}`);
      if (seen.copied > 0 && seen.pending > 0 && (await (options.midWay?.(seen) ?? true))) return seen;
    }
    await sleep(100);
  }
}

/** The replay CLI killed with SIGKILL: killed, and no result printed. */
export function assertKilled(killed: CliResult): void {
  assert.equal(killed.signal, 'SIGKILL');
  assert.equal(killed.stdout, '', 'the killed replay printed no result');
}

/**
 * What a kill mid-build leaves (`lightmem replay status`): v2 building beside v1, which serves reads; v2's
 * copy cursor at least where it was seen before the kill.
 */
export function assertLeftBuilding(status: readonly ReplayStatus[], seen: ReplayStatus): void {
  assert.deepEqual(
    status.map((v) => [v.version, v.builtAt === null, v.serves]),
    [
      ['v1', false, ['*']],
      ['v2', true, []],
    ],
  );
  const copied = status.find((v) => v.version === 'v2')?.copied ?? 0;
  assert.ok(copied >= seen.copied, `v2's copy cursor survived the kill (${copied})`);
}

/**
 * The diff report of v1 → v2 (logged first, with v2's memories when its build was killed) is the known
 * effect of granularity=both: every group of v1 (each memory cites its own turn) unchanged, nothing changed
 * or removed, one added memory per added group, and the added groups are v2's segment summaries, sampled as
 * "speaker: text" lines of several turns.
 */
export function assertKnownGranularityDiff(
  diff: VersionDiff,
  expected: { readonly v1Memories: number; readonly v2: readonly MemoryEntry[]; readonly v2AtKill: number },
): void {
  const summaries = expected.v2.filter((m) => m.kind === 'summary');
  console.log(
    `diff ${JSON.stringify({ ...diff, samples: undefined })}; v2 held ${expected.v2AtKill} memories when killed`,
  );
  assert.equal(diff.from, 'v1');
  assert.equal(diff.to, 'v2');
  assert.deepEqual(diff.tenants, [tenant]);
  assert.equal(diff.before, expected.v1Memories);
  assert.equal(diff.changed, 0, 'turn memories are the same with granularity both');
  assert.equal(diff.removed, 0);
  // Each v1 memory cites its own turn: one group each, all found unchanged in v2.
  assert.equal(diff.unchanged, expected.v1Memories);
  assert.ok(diff.added > 0, 'segment summaries were added');
  assert.equal(diff.after, diff.before + diff.added, 'one memory per added group, nothing twice');
  assert.equal(diff.added, summaries.length);
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
}

/**
 * The stores themselves: v2 holds v1's turn memories unchanged (by shape), no memory id twice, and
 * summaries that are their turns (one "speaker: text" line each) and cover every turn of v1 once.
 */
export function assertTurnsKeptAndSummarized(v1: readonly MemoryEntry[], v2: readonly MemoryEntry[]): void {
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
  for (const summary of v2.filter((m) => m.kind === 'summary')) {
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
}

/** A search load: its samples so far, and how to end it. */
export interface SearchLoad {
  readonly samples: readonly Sample[];
  /** Ends the loops once their requests in flight are answered. */
  stop(): Promise<void>;
}

/**
 * `concurrency` loops of search requests, back to back, each recorded as a sample (a request that throws
 * as its error for status, no kinds) until stopped.
 */
export function searchLoad(
  request: () => Promise<{ status: number; results?: readonly SearchResult[] | undefined }>,
  concurrency = 4,
): SearchLoad {
  const samples: Sample[] = [];
  let stop = false;
  const loop = async (): Promise<void> => {
    while (!stop) {
      const start = Date.now();
      try {
        const answer = await request();
        samples.push({
          start,
          end: Date.now(),
          status: answer.status,
          kinds: (answer.results ?? []).map((r) => r.kind),
        });
      } catch (error) {
        samples.push({ start, end: Date.now(), status: String(error), kinds: [] });
      }
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  return {
    samples,
    stop: async () => {
      stop = true;
      await Promise.all(loops);
    },
  };
}

/** A switch run under a load: its result, and when it started and returned (ms since epoch). */
export interface TimedSwitch {
  readonly switched: CliResult;
  readonly start: number;
  readonly end: number;
}

/** Lets a load run for 2 s, then runs `lightmem replay switch` (`run`), timed. */
export async function switchAfterWarmUp(run: () => Promise<CliResult>): Promise<TimedSwitch> {
  await sleep(2_000);
  const start = Date.now();
  const switched = await run();
  return { switched, start, end: Date.now() };
}

/**
 * `lightmem replay switch v2 --json` under a search load: v2 serves every tenant; no request failed; v1
 * answered (with no summary) every request that ended before the switch started, v2 (with a summary) every
 * one that started `settleMs` after it returned. Logs the counts.
 */
export function assertSwitchedUnderLoad(
  samples: readonly Sample[],
  window: TimedSwitch & { readonly settleMs: number },
): void {
  const status = lastJsonLine(window.switched) as ReplayStatus;
  assert.equal(status.version, 'v2');
  assert.deepEqual(status.serves, ['*']);
  const failed = samples.filter((s) => s.status !== 200);
  const beforeSwitch = samples.filter((s) => s.end < window.start);
  const afterSwitch = samples.filter((s) => s.start > window.end + window.settleMs);
  const summaryIn = (s: Sample): boolean => s.kinds.includes('summary');
  console.log(
    JSON.stringify({
      requests: samples.length,
      failed: failed.length,
      beforeSwitch: beforeSwitch.length,
      duringSwitch: samples.length - beforeSwitch.length - afterSwitch.length,
      afterSwitch: afterSwitch.length,
      switchMs: window.end - window.start,
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
}

/** `lightmem replay drop <version> --json` dropped it. */
export function assertDropped(result: CliResult, version: string): void {
  const dropped = lastJsonLine(result) as ReplayStatus;
  assert.equal(dropped.version, version);
  assert.notEqual(dropped.droppedAt, null);
}

/** `lightmem replay drop v2 --json` refused: v2 serves reads. */
export function assertDropRefused(refused: CliResult): void {
  assert.notEqual(refused.code, 0, refused.stdout);
  assert.match(refused.stderr, /v2 serves reads/);
}
