/**
 * The run behind every evidence-recall benchmark (LoCoMo now, LongMemEval next): each case (a LoCoMo
 * sample, a LongMemEval question) is ingested into its own scope through the normal ingestion path,
 * session ends included, and the pipeline is drained; then each question is asked through the normal
 * search path, scoped to its case, and the ranked memories are kept with their prompt text and sources.
 */
import type { Clock } from '../core/ports/clock.js';
import type { Scope } from '../core/model/scope.js';
import { Topics } from '../core/model/topics.js';
import { LightmemError } from '../core/errors.js';
import { approxTokenCount } from '../core/text/token-count.js';
import { Ingestion } from '../app/ingestion.js';
import { MemorySearch, memoryView } from '../app/memory-search.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { InputItem } from '../ingest/index.js';
import { ingestRawTurns } from './raw-turn-ingest.js';
import type { EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import { promptText } from './prompt-text.js';

export interface RecallQuestion {
  readonly questionId: string;
  /** As the dataset names it (LoCoMo: 1–5; LongMemEval: the question type). */
  readonly category: number | string;
  readonly query: string;
  /** Gold source turn ids. */
  readonly gold: readonly string[];
  /** In a category the recall figures count (asked and written out either way; needs gold to be scored). */
  readonly scored: boolean;
  /** The dataset's reference answer (for `--qa` grading only; never fed to the memory system). */
  readonly answer?: string | undefined;
  /** When the question is asked, as the dataset writes it (LongMemEval `question_date`). */
  readonly askedAt?: string | undefined;
  /** LongMemEval abstention question (`_abs`): the right answer is that the memories do not say. */
  readonly abstention?: boolean | undefined;
}

export interface RecallCase {
  readonly caseId: string;
  /** The case's own scope: everything it ingests lands here, and its questions search only here. */
  readonly scope: { readonly tenantId: string; readonly userId: string };
  /** The case's conversation events (a loader's items, opened when the case is ingested). */
  readonly items: () => AsyncIterable<InputItem> | Iterable<InputItem>;
  readonly questions: readonly RecallQuestion[];
  /** The dataset's id of one of the case's turn ids (default: the same). */
  readonly sourceId?: ((turnId: string) => string) | undefined;
}

/** The parts of the embedded runtime a benchmark drives. */
export type RecallRuntime = Pick<
  EmbeddedRuntime,
  'eventLog' | 'store' | 'components' | 'config' | 'startPipeline' | 'stopPipeline' | 'waitForDrain'
>;

export interface RetrievedMemory {
  readonly id: string;
  readonly score: number;
  /** The memory as an answer prompt would hold it (promptText). */
  readonly text: string;
  readonly sources: readonly string[];
  /** approxTokenCount(text). */
  readonly tokens: number;
}

export interface Retrieval {
  readonly caseId: string;
  readonly question: RecallQuestion;
  /** Best first. */
  readonly retrieved: readonly RetrievedMemory[];
}

export interface CaseResult {
  readonly caseId: string;
  /** The case's scope. */
  readonly tenantId: string;
  readonly userId: string;
  /** Events appended (turns and session ends), already present, rejected. */
  readonly accepted: number;
  readonly duplicates: number;
  readonly rejected: number;
  readonly sessionEnds: number;
  /** From the first append until the pipeline drained. */
  readonly ingestSeconds: number;
  /** Live memories in the case's scope. */
  readonly memories: number;
  /** Sum of the memories' prompt-text tokens. */
  readonly memoryTokens: number;
  /** Distinct source turns of the memories. */
  readonly sourceTurns: number;
}

/** The compressor's totals over the turns of the run's scopes (from its output topic). */
export interface CompressionTotals {
  readonly turns: number;
  readonly originalTokens: number;
  readonly keptTokens: number;
}

/** A question as it is asked: in its case's scope, its sources named by the dataset's turn ids. */
export interface AskedQuestion {
  readonly caseId: string;
  readonly scope: RecallCase['scope'];
  readonly question: RecallQuestion;
  readonly sourceId: (turnId: string) => string;
}

export interface RecallRun {
  readonly cases: readonly CaseResult[];
  /** Every question in the order asked (to ask them again, e.g. after consolidation). */
  readonly asked: readonly AskedQuestion[];
  readonly retrievals: readonly Retrieval[];
  readonly compression: CompressionTotals;
  readonly ingestSeconds: number;
  /** Dead letters written during the run (ingest errors and stage failures). */
  readonly deadLetters: number;
  /** Whether this process ran the pipeline (false: another lightmem process on the data dir did). */
  readonly ranPipeline: boolean;
  readonly searchLimit: number;
  readonly searchLatency: LatencySummary;
}

export interface RecallProgress {
  readonly phase: 'ingest' | 'search';
  readonly done: number;
  readonly total: number;
  readonly detail: string;
}

export interface RecallBenchOptions {
  readonly clock: Clock;
  /** Where the cases came from (dead letters name it). */
  readonly source: string;
  /** Memories retrieved per question. */
  readonly searchLimit: number;
  /** For progress when the cases are streamed. */
  readonly expectedCases?: number | undefined;
  /** Untimed queries first (statements compile, pages load); default 20. */
  readonly warmupQueries?: number | undefined;
  readonly onProgress?: ((progress: RecallProgress) => void) | undefined;
  /**
   * A raw-turn baseline: turns go straight into the store (one memory per turn, vectors from `embedder`
   * unless it is null) instead of through the pipeline.
   */
  readonly raw?: { readonly embedder: Embedder | null; readonly roles: ReadonlySet<string> } | undefined;
}

const listPage = 500;
const readPage = 1000;

export async function runRecallBench(
  runtime: RecallRuntime,
  cases: AsyncIterable<RecallCase> | Iterable<RecallCase>,
  options: RecallBenchOptions,
): Promise<RecallRun> {
  const log = runtime.eventLog;
  const deadLettersBefore = await log.endOffset(Topics.deadLetters);
  const ingestion = new Ingestion(log, options.clock);
  const raw = options.raw;
  const ranPipeline = raw === undefined ? runtime.startPipeline() : false;
  const rawTotals = { turns: 0, originalTokens: 0, keptTokens: 0 };
  const results: CaseResult[] = [];
  const asked: AskedQuestion[] = [];
  const scopes = new Set<string>();
  const total = options.expectedCases ?? 0;
  try {
    for await (const recallCase of cases) {
      scopes.add(scopeKey(recallCase.scope));
      options.onProgress?.({
        phase: 'ingest',
        done: results.length,
        total: Math.max(total, results.length + 1),
        detail: `${recallCase.caseId}…`,
      });
      const started = performance.now();
      let report: { accepted: number; duplicates: number; rejected: number; sessionEnds: number };
      if (raw === undefined) {
        report = await ingestion.ingest(recallCase.items(), {
          source: options.source,
          endSessions: true,
          flushAtEnd: !runtime.config.summarizer.flushAtSessionEnd,
        });
        await runtime.waitForDrain();
      } else {
        const rawReport = await ingestRawTurns(recallCase.items(), {
          store: runtime.store,
          embedder: raw.embedder,
          roles: raw.roles,
          clock: options.clock,
        });
        report = { ...rawReport, duplicates: 0, sessionEnds: 0 };
        rawTotals.turns += rawReport.turns;
        rawTotals.originalTokens += rawReport.tokens;
        rawTotals.keptTokens += rawReport.tokens;
      }
      const ingestSeconds = (performance.now() - started) / 1000;
      const memories = await memoryTotals(runtime, recallCase.scope);
      results.push({
        caseId: recallCase.caseId,
        tenantId: recallCase.scope.tenantId,
        userId: recallCase.scope.userId,
        accepted: report.accepted,
        duplicates: report.duplicates,
        rejected: report.rejected,
        sessionEnds: report.sessionEnds,
        ingestSeconds: round(ingestSeconds),
        ...memories,
      });
      for (const question of recallCase.questions)
        asked.push({
          caseId: recallCase.caseId,
          scope: recallCase.scope,
          question,
          sourceId: recallCase.sourceId ?? identity,
        });
      options.onProgress?.({
        phase: 'ingest',
        done: results.length,
        total: Math.max(total, results.length),
        detail: `${recallCase.caseId}: ${memories.memories} memories`,
      });
    }
  } finally {
    // Searches run on a quiet store: nothing is left to process, and the stages' polling is not timed.
    if (raw === undefined) await runtime.stopPipeline();
  }
  const deadLetters = (await log.endOffset(Topics.deadLetters)) - deadLettersBefore;
  const compression = raw === undefined ? await compressionTotals(runtime, scopes) : rawTotals;

  const { retrievals, latency } = await searchQuestions(runtime, asked, options);
  return {
    cases: results,
    asked,
    retrievals,
    compression,
    ingestSeconds: round(results.reduce((sum, c) => sum + c.ingestSeconds, 0)),
    deadLetters,
    ranPipeline,
    searchLimit: options.searchLimit,
    searchLatency: latency,
  };
}

/**
 * Asks every question through the normal search path, scoped to its case, after `warmupQueries` untimed
 * ones; keeps the ranked memories with their prompt text and sources, and the time of each search call.
 */
export async function searchQuestions(
  runtime: Pick<RecallRuntime, 'store' | 'components' | 'config'>,
  asked: readonly AskedQuestion[],
  options: Pick<RecallBenchOptions, 'searchLimit' | 'warmupQueries' | 'onProgress'>,
): Promise<{ retrievals: Retrieval[]; latency: LatencySummary }> {
  const search = new MemorySearch(runtime.store, runtime.components.embedder, runtime.config.search);
  /** The retrieval and the time of the search call alone (not the prompt rendering after it). */
  const ask = async (entry: AskedQuestion): Promise<{ retrieval: Retrieval; ms: number }> => {
    const started = performance.now();
    const hits = await search.search({
      scope: entry.scope,
      query: entry.question.query,
      limit: options.searchLimit,
    });
    const ms = performance.now() - started;
    const retrieved = hits.map((hit): RetrievedMemory => {
      if (hit.tenantId !== entry.scope.tenantId || hit.userId !== entry.scope.userId) {
        throw new LightmemError(
          'internal',
          `search for ${entry.question.questionId} returned memory ${hit.id} of ${hit.tenantId}/${hit.userId}, outside its scope`,
        );
      }
      const text = promptText(hit);
      return {
        id: hit.id,
        score: hit.score,
        text,
        sources: hit.sourceTurnIds.map(entry.sourceId),
        tokens: approxTokenCount(text),
      };
    });
    return { retrieval: { caseId: entry.caseId, question: entry.question, retrieved }, ms };
  };
  for (const entry of asked.slice(0, options.warmupQueries ?? 20)) await ask(entry);
  const retrievals: Retrieval[] = [];
  const latencies: number[] = [];
  for (const entry of asked) {
    const { retrieval, ms } = await ask(entry);
    retrievals.push(retrieval);
    latencies.push(ms);
    options.onProgress?.({
      phase: 'search',
      done: retrievals.length,
      total: asked.length,
      detail: 'questions',
    });
  }
  return { retrievals, latency: summarizeLatencies(latencies) };
}

/** Live memories of a scope, their prompt-text tokens and their distinct source turns. */
export async function memoryTotals(
  runtime: Pick<RecallRuntime, 'store'>,
  scope: Scope,
): Promise<{ memories: number; memoryTokens: number; sourceTurns: number }> {
  let memories = 0;
  let memoryTokens = 0;
  const sources = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await runtime.store.list({ scope, limit: listPage, cursor });
    for (const entry of page.items) {
      memories++;
      memoryTokens += approxTokenCount(promptText(memoryView(entry)));
      for (const id of entry.sourceTurnIds) sources.add(`${entry.conversationId}\u0000${id}`);
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return { memories, memoryTokens, sourceTurns: sources.size };
}

/** Sums the compressor's kept and original tokens over the turns of the benchmark's scopes. */
async function compressionTotals(
  runtime: RecallRuntime,
  scopes: ReadonlySet<string>,
): Promise<CompressionTotals> {
  let turns = 0;
  let originalTokens = 0;
  let keptTokens = 0;
  const end = await runtime.eventLog.endOffset(Topics.compressed);
  for (let offset = 0; offset < end; offset += readPage) {
    for (const { value } of await runtime.eventLog.read(Topics.compressed, offset, readPage)) {
      const event = value.event;
      if (event.kind !== 'turn' || !scopes.has(scopeKey(event))) continue;
      turns++;
      originalTokens += value.originalTokens;
      keptTokens += value.keptTokens;
    }
  }
  return { turns, originalTokens, keptTokens };
}

function scopeKey(scope: { readonly tenantId: string; readonly userId: string }): string {
  return `${scope.tenantId}\u0000${scope.userId}`;
}

const identity = (turnId: string): string => turnId;

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
