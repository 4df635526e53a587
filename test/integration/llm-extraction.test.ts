import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { locomoFile, runCli, tempDir } from '../support/cli.js';
import { loadConfig } from '../../services/runtime/load-config.js';
import { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { DistributedRuntime } from '../../services/runtime/distributed-runtime.js';
import type { Runtime } from '../../services/runtime/runtime.js';
import { Ingestion } from '../../services/app/ingestion.js';
import { loadDataset } from '../../services/ingest/index.js';
import { Topics } from '../../services/core/model/topics.js';
import type { DeadLetter, MemoryEntry } from '../../services/core/model/generated.js';
import type { MemoryStore } from '../../services/core/ports/memory-store.js';
import type { LlmLedger, LlmUsageTotals } from '../../services/core/ports/llm-ledger.js';
import { systemClock } from '../../services/core/ports/clock.js';
import type { LightmemConfigInput } from '../../services/core/config.js';
import { deleteTopics, servers, testLogger } from './support/servers.js';
import { deletePrefix, rawClient } from './support/elasticsearch.js';
import { distributedConfig, startStages, stopStages, writeConfig } from './support/distributed.js';

/** Turns of the first LoCoMo session ingested: one STM batch, so one call (two with a repair) on the model. */
const turnCount = 12;
const tenantId = 'default';

/** The LLM extractor on the local server, sized so that one extraction takes seconds, not minutes. */
const llmSettings = {
  // Greedy decoding: the same answer each run (at the default 0.1 it varies between usable and cut off).
  summarizer: { extractor: 'llm', maxAnswerTokens: 256, temperature: 0, onMalformed: 'extractive' },
  llm: {
    baseUrl: servers.llmBaseUrl,
    model: servers.llmModel,
    // llama-cpp-python refuses `json_schema` (HTTP 500) and takes a schema beside `json_object`.
    structuredOutput: 'json_object_schema',
    concurrency: 1,
    // A long prompt on two cores takes many seconds; a retry would only double the wait.
    timeoutMs: 300_000,
    maxRetries: 1,
  },
  models: { embedder: 'none' },
} satisfies LightmemConfigInput;

interface SessionFile {
  readonly file: string;
  /** The ingested turn ids (LoCoMo `dia_id`), in order. */
  readonly turnIds: readonly string[];
  readonly speakers: ReadonlyMap<string, string>;
}

/** The first `turnCount` turns of the first session of the first LoCoMo sample, as a LoCoMo file. */
function firstSession(dir: string): SessionFile {
  const [sample] = JSON.parse(readFileSync(locomoFile, 'utf8')) as {
    sample_id: string;
    conversation: Record<string, unknown>;
  }[];
  assert.ok(sample !== undefined, `no sample in ${locomoFile}`);
  const turns = (sample.conversation['session_1'] as { dia_id: string; speaker: string }[]).slice(
    0,
    turnCount,
  );
  const conversation = {
    speaker_a: sample.conversation['speaker_a'],
    speaker_b: sample.conversation['speaker_b'],
    session_1_date_time: sample.conversation['session_1_date_time'],
    session_1: turns,
  };
  const file = join(dir, 'locomo-first-session.json');
  writeFileSync(file, JSON.stringify([{ sample_id: sample.sample_id, conversation }]));
  return {
    file,
    turnIds: turns.map((t) => t.dia_id),
    speakers: new Map(turns.map((t) => [t.dia_id, t.speaker])),
  };
}

async function allMemories(store: MemoryStore): Promise<MemoryEntry[]> {
  const out: MemoryEntry[] = [];
  let cursor: string | undefined = undefined;
  for (;;) {
    const page: { items: MemoryEntry[]; nextCursor: string | null } = await store.list({
      scope: { tenantId },
      limit: 1_000,
      cursor,
      includeSuperseded: true,
    });
    out.push(...page.items);
    if (page.nextCursor === null) return out;
    cursor = page.nextCursor;
  }
}

/** Appends the file's turns (and the session end) and waits until every stage has processed them. */
async function ingestAndDrain(runtime: Runtime, file: string): Promise<number> {
  const report = await new Ingestion(runtime.eventLog, systemClock).ingest(
    loadDataset(file, 'locomo', { tenantId }),
    { source: file, endSessions: true },
  );
  assert.equal(report.rejected, 0, JSON.stringify(report.errors));
  await runtime.waitForDrain();
  for (const lag of await runtime.lag()) {
    assert.ok(lag.committed >= lag.end, `stage ${lag.stage} drained: ${JSON.stringify(lag)}`);
  }
  return report.accepted;
}

interface LedgerRow {
  purpose: string;
  outcome: string;
  prompt_tokens: number;
  completion_tokens: number;
  latency_ms: number;
  error: string | null;
  answer_text: string | null;
  finish_reason: string | null;
}

/** Every call of a ledger file, oldest first (for the log of what the real model answered). */
function ledgerRows(file: string): LedgerRow[] {
  const db = new Database(file, { readonly: true });
  try {
    return db
      .prepare(
        `SELECT purpose, outcome, prompt_tokens, completion_tokens, latency_ms, error, answer_text, finish_reason
         FROM llm_calls ORDER BY at`,
      )
      .all() as LedgerRow[];
  } finally {
    db.close();
  }
}

/**
 * Every call the distributed ledger holds (`<prefix>llm-calls`), oldest first, with its answer from the
 * day's answers index when it is still there.
 */
async function elasticsearchLedgerRows(indexPrefix: string): Promise<LedgerRow[]> {
  const client = rawClient();
  try {
    await client.indices.refresh({ index: `${indexPrefix}llm-*`, allow_no_indices: true });
    const found = await client.search<{
      request_hash: string;
      purpose: string;
      outcome: string;
      prompt_tokens: number;
      completion_tokens: number;
      latency_ms: number;
      error?: string | null;
    }>({ index: `${indexPrefix}llm-calls`, size: 100, sort: [{ at: 'asc' }] });
    const rows: LedgerRow[] = [];
    for (const hit of found.hits.hits) {
      const call = hit._source;
      if (call === undefined) continue;
      const answers = await client.search<{ text: string; finish_reason: string }>({
        index: `${indexPrefix}llm-answers-*`,
        size: 1,
        query: { ids: { values: [call.request_hash] } },
        ignore_unavailable: true,
        allow_no_indices: true,
      });
      const answer = answers.hits.hits[0]?._source;
      rows.push({
        purpose: call.purpose,
        outcome: call.outcome,
        prompt_tokens: call.prompt_tokens,
        completion_tokens: call.completion_tokens,
        latency_ms: call.latency_ms,
        error: call.error ?? null,
        answer_text: answer?.text ?? null,
        finish_reason: answer?.finish_reason ?? null,
      });
    }
    return rows;
  } finally {
    await client.close();
  }
}

/** The ledger's totals for the local model (zeros when it recorded no call: `check` says so). */
async function ledgerTotals(ledger: LlmLedger): Promise<LlmUsageTotals> {
  const totals = (await ledger.totals({ tenantId })).filter((t) => t.model === servers.llmModel);
  assert.ok(totals.length <= 1, `one total for ${servers.llmModel}: ${JSON.stringify(totals)}`);
  return (
    totals[0] ?? {
      tenantId,
      model: servers.llmModel,
      calls: 0,
      failedCalls: 0,
      reusedAnswers: 0,
      promptTokens: 0,
      completionTokens: 0,
      latencyMs: 0,
    }
  );
}

interface RunResult {
  readonly memories: readonly MemoryEntry[];
  readonly deadLetters: readonly DeadLetter[];
  readonly totals: LlmUsageTotals;
  readonly calls: readonly LedgerRow[];
  readonly seconds: number;
}

/** The assertions both modes share; logs the numbers of the run. */
/** Returns whether the batch fell back to extractive memories. */
function check(mode: string, session: SessionFile, run: RunResult): { fellBack: boolean } {
  const { memories, deadLetters, totals, calls } = run;
  const llmLetters = deadLetters.filter((d) => d.stage === 'summarizer' && d.field === 'llm.answer');
  const fellBack = llmLetters.some((d) => /unusable after a repair request/.test(d.reason));
  console.log(
    `${mode}: ${run.seconds.toFixed(1)} s for ${session.turnIds.length} turns; ${totals.calls} calls ` +
      `(${totals.failedCalls} failed, ${totals.reusedAnswers} reused), ${totals.promptTokens} prompt + ` +
      `${totals.completionTokens} completion tokens, ${(totals.latencyMs / 1000).toFixed(1)} s in calls; ` +
      `${memories.length} memories (${memories.filter((m) => m.pipeline.promptHash !== null).length} by the LLM, ` +
      `${memories.filter((m) => m.pipeline.promptHash === null).length} extractive; kinds ` +
      `${[...new Set(memories.map((m) => m.kind))].join(', ')}); ${llmLetters.length} llm.answer dead letters` +
      (fellBack ? ': the batch fell back to extractive memories' : ''),
  );
  for (const call of calls) {
    console.log(
      `  ${call.purpose}: ${call.outcome} (${call.finish_reason ?? '-'}), ${call.prompt_tokens}+${call.completion_tokens} tokens, ` +
        `${(call.latency_ms / 1000).toFixed(1)} s${call.error === null ? '' : `, ${call.error}`}; answer: ` +
        JSON.stringify((call.answer_text ?? '').slice(0, 300)),
    );
  }
  for (const letter of llmLetters) console.log(`  dead letter: ${letter.reason.slice(0, 300)}`);
  for (const memory of memories.slice(0, 8)) {
    console.log(`  memory [${memory.kind}] ${memory.sourceTurnIds.join(',')}: ${memory.text.slice(0, 120)}`);
  }

  // The server was called, and the ledger counts the tokens it reported.
  assert.ok(totals.calls > 0, `calls recorded: ${JSON.stringify(totals)}`);
  assert.ok(totals.promptTokens > 0, `prompt tokens recorded: ${JSON.stringify(totals)}`);
  assert.ok(totals.completionTokens > 0, `completion tokens recorded: ${JSON.stringify(totals)}`);
  assert.ok(
    calls.some((c) => c.outcome !== 'failed' && c.prompt_tokens > 0 && c.completion_tokens > 0),
    'a call answered with the usage the server reported',
  );

  assert.ok(memories.length > 0, 'the batch made memories');
  const ingested = new Set(session.turnIds);
  for (const memory of memories) {
    assert.equal(memory.sessionId, 'session_1');
    assert.ok(memory.sourceTurnIds.length > 0, `memory ${memory.id} cites turns`);
    if (memory.kind !== 'summary') {
      const outside = memory.sourceTurnIds.filter((id) => !ingested.has(id));
      assert.deepEqual(outside, [], `memory ${memory.id} cites only ingested turns: ${memory.text}`);
    }
    // Its speaker is the speaker of one of its turns (memoryOf joins them; the extractive path copies one).
    const speakers = new Set(memory.sourceTurnIds.map((id) => session.speakers.get(id)));
    for (const name of memory.speaker.split(', ')) {
      assert.ok(speakers.has(name), `memory ${memory.id}'s speaker ${memory.speaker} spoke one of its turns`);
    }
  }

  // LLM memories carry the prompt hash and the LLM extractor's version; the extractive fallback's its own.
  const llmMemories = memories.filter((m) => m.pipeline.promptHash !== null);
  const fallbackMemories = memories.filter((m) => m.pipeline.promptHash === null);
  for (const memory of llmMemories) assert.match(memory.pipeline.extractor, /^llm-v1\(/);
  for (const memory of fallbackMemories) assert.match(memory.pipeline.extractor, /^extractive-v1\(/);
  assert.ok(
    llmMemories.length > 0 || fellBack,
    'LLM memories, or a fallback to extractive memories with its dead letter',
  );
  if (llmMemories.length > 0) {
    assert.ok(
      calls.some((c) => c.outcome === 'ok'),
      'LLM memories come from an answer judged usable',
    );
  }
  if (fellBack) {
    // The answer stayed unusable: every memorized turn is kept as an extractive memory, nothing dropped.
    const covered = new Set(fallbackMemories.flatMap((m) => m.sourceTurnIds));
    assert.deepEqual(
      session.turnIds.filter((id) => !covered.has(id)),
      [],
      'every turn is covered by an extractive memory',
    );
    assert.ok(
      calls.some((c) => c.purpose === 'repair'),
      'a repair request was sent before falling back',
    );
  } else {
    assert.deepEqual(fallbackMemories, [], 'no extractive memories without a fallback dead letter');
  }
  return { fellBack };
}

/** The session through an embedded runtime in this process (the stages run here), with `settings`. */
async function embeddedRun(
  session: SessionFile,
  dataDir: string,
  settings: LightmemConfigInput,
): Promise<RunResult> {
  const config = loadConfig({ env: {}, overrides: { ...settings, mode: 'embedded', dataDir } });
  const runtime = await EmbeddedRuntime.open(config, {
    logger: testLogger,
    clock: systemClock,
    models: { embedder: null },
    env: {},
  });
  try {
    const started = performance.now();
    assert.equal(runtime.startPipeline(), true);
    assert.equal(await ingestAndDrain(runtime, session.file), turnCount);
    const seconds = (performance.now() - started) / 1000;
    const letters = await runtime.eventLog.read(Topics.deadLetters, 0, 10_000);
    return {
      memories: await allMemories(runtime.store),
      deadLetters: letters.map((r) => r.value),
      totals: await ledgerTotals(runtime.ledger),
      calls: ledgerRows(join(dataDir, 'ledger.db')),
      seconds,
    };
  } finally {
    await runtime.close();
  }
}

/**
 * The summarizer's LLM path on the local chat server of `npm run infra:up` (SmolLM2-135M: weak on purpose,
 * so its answers are often unusable). Whatever it answers, no memory may cite a turn outside its batch, no
 * turn may be dropped when the batch falls back to extractive memories, and the ledger must count the
 * tokens the server reported.
 */
describe('LLM extraction on the real local model (llama-cpp-python, SmolLM2-135M)', () => {
  const dir = tempDir('llm-extraction');
  const cleanups: (() => Promise<void>)[] = [];
  let session: SessionFile;

  before(async () => {
    session = firstSession(dir.path);
    // The server answers at all (a clear failure here beats a drained pipeline with only failed calls).
    const response = await fetch(`${servers.llmBaseUrl}/models`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(
      response.status,
      200,
      `the LLM server at ${servers.llmBaseUrl} is not up (npm run infra:up)`,
    );
  });
  after(async () => {
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
    dir.remove();
  });

  it('embedded: one LoCoMo session through the LLM extractor', async () => {
    const run = await embeddedRun(session, join(dir.path, 'embedded'), llmSettings);
    check('embedded', session, run);
  });

  it('embedded, answers cut at the token limit twice: the batch falls back to extractive memories, every turn kept', async () => {
    // 24 tokens cannot hold one fact: the answer and the repair are both cut off (finish_reason length).
    const settings = { ...llmSettings, summarizer: { ...llmSettings.summarizer, maxAnswerTokens: 24 } };
    const run = await embeddedRun(session, join(dir.path, 'embedded-cut'), settings);
    const { fellBack } = check('embedded, cut answers', session, run);
    assert.ok(fellBack, 'the batch fell back, with an llm.answer dead letter');
    assert.deepEqual(
      run.calls.map((c) => [c.purpose, c.outcome]),
      [
        ['extract', 'truncated'],
        ['repair', 'truncated'],
      ],
    );
    assert.ok(run.memories.every((m) => m.pipeline.promptHash === null));
  });

  it('distributed: the same session through four stage processes on Kafka + Elasticsearch', async () => {
    const config = distributedConfig('llm', { ...llmSettings, dataDir: join(dir.path, 'services') });
    const file = writeConfig(dir.path, 'distributed-llm', config);
    const indexPrefix = config.elasticsearch!.indexPrefix!;
    cleanups.push(
      () => deleteTopics({ prefix: config.kafka!.topicPrefix!, partitions: 3, replicationFactor: 1 }),
      async () => {
        const client = rawClient();
        await deletePrefix(client, indexPrefix).finally(() => client.close());
      },
    );
    // The endpoint through the environment, as a deployment would set it.
    const env = {
      LIGHTMEM_LLM_BASE_URL: servers.llmBaseUrl,
      LIGHTMEM_LLM_MODEL: servers.llmModel,
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
    };
    const init = await runCli(['admin', 'init', '--config', file], env);
    assert.equal(init.code, 0, init.stderr);
    const stages = await startStages(file, env);
    try {
      // The test's own runtime ingests and reads; the summarizer process calls the model. The ledger is
      // in Elasticsearch, so this runtime's ledger sees the summarizer's calls.
      const runtime = await DistributedRuntime.open(
        loadConfig({ env: {}, overrides: { ...config, dataDir: join(dir.path, 'client') } }),
        { logger: testLogger, clock: systemClock, models: { embedder: null }, env: {} },
      );
      try {
        const started = performance.now();
        assert.equal(await ingestAndDrain(runtime, session.file), turnCount);
        const seconds = (performance.now() - started) / 1000;
        for (const [stage, process] of stages) assert.ok(process.alive, `${stage} alive:\n${process.log}`);
        check('distributed', session, {
          memories: await allMemories(runtime.store),
          deadLetters: (await runtime.eventLog.read(Topics.deadLetters, 0, 10_000)).map((r) => r.value),
          totals: await ledgerTotals(runtime.ledger),
          calls: await elasticsearchLedgerRows(indexPrefix),
          seconds,
        });
      } finally {
        await runtime.close();
      }
    } finally {
      await stopStages(stages);
    }
  });
});
