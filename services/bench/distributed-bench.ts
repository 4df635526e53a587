/**
 * Embedded vs distributed on the same LoCoMo file, the same models and the same configuration, in one
 * run: ingest throughput of each (turns/s, and the ratio), whether both made the same memories, and
 * whether searches agree (gold turns found for the same questions, top-10 overlap), with the search
 * latency of Elasticsearch and SQLite at the same corpus size.
 */
import type { Clock } from '../core/ports/clock.js';
import type { Logger } from '../core/ports/logger.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import { Ingestion, type IngestReport } from '../app/ingestion.js';
import { MemorySearch, type SearchResult } from '../app/memory-search.js';
import { loadDataset } from '../ingest/index.js';
import type { Runtime } from '../runtime/runtime.js';
import type { StageLag } from '../runtime/pipeline.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import { isScoredLocomoCategory, readLocomoSamples } from './locomo-dataset.js';

export interface IngestRun {
  readonly turns: number;
  readonly seconds: number;
  readonly turnsPerSecond: number;
  readonly memories: number;
}

export interface DistributedBenchReport extends SearchAgreement {
  readonly file: string;
  readonly embedded: IngestRun;
  readonly distributed: IngestRun;
  /** distributed turns/s ÷ embedded turns/s. */
  readonly throughputRatio: number;
  readonly sameMemoryIds: boolean;
  readonly onlyEmbedded: number;
  readonly onlyDistributed: number;
}

export interface BenchSide {
  readonly runtime: Runtime;
  /** Starts the pipeline (embedded: in process; distributed: the stage processes) before ingest. */
  readonly start: () => Promise<void>;
}

export interface DistributedBenchOptions {
  readonly file: string;
  readonly tenantId: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onProgress?: ((side: string, lags: StageLag[]) => void) | undefined;
}

async function ingestSide(
  side: BenchSide,
  name: string,
  options: DistributedBenchOptions,
): Promise<{ run: IngestRun; report: IngestReport }> {
  await side.start();
  const started = performance.now();
  const report = await new Ingestion(side.runtime.eventLog, options.clock).ingest(
    loadDataset(options.file, 'locomo', { tenantId: options.tenantId }),
    {
      source: options.file,
      endSessions: true,
      flushAtEnd: !side.runtime.config.summarizer.flushAtSessionEnd,
    },
  );
  await side.runtime.waitForDrain({ onProgress: (lags) => options.onProgress?.(name, lags), pollMs: 100 });
  const seconds = (performance.now() - started) / 1000;
  const memories = (await side.runtime.store.stats({ tenantId: options.tenantId })).live;
  return {
    run: {
      turns: report.accepted,
      seconds: round(seconds),
      turnsPerSecond: round(report.accepted / seconds),
      memories,
    },
    report,
  };
}

export async function memoryIds(store: MemoryStore, tenantId: string): Promise<Set<string>> {
  const ids = new Set<string>();
  let cursor: string | undefined = undefined;
  for (;;) {
    const page: { items: { id: string }[]; nextCursor: string | null } = await store.list({
      scope: { tenantId },
      limit: 1_000,
      cursor,
      includeSuperseded: true,
    });
    for (const item of page.items) ids.add(item.id);
    if (page.nextCursor === null) return ids;
    cursor = page.nextCursor;
  }
}

export async function runDistributedBench(
  embedded: BenchSide,
  distributed: BenchSide,
  options: DistributedBenchOptions,
): Promise<DistributedBenchReport> {
  const e = await ingestSide(embedded, 'embedded', options);
  const d = await ingestSide(distributed, 'distributed', options);
  const embeddedIds = await memoryIds(embedded.runtime.store, options.tenantId);
  const distributedIds = await memoryIds(distributed.runtime.store, options.tenantId);
  const onlyEmbedded = [...embeddedIds].filter((id) => !distributedIds.has(id)).length;
  const onlyDistributed = [...distributedIds].filter((id) => !embeddedIds.has(id)).length;

  const searches = await compareSearches(embedded.runtime, distributed.runtime, options);
  return {
    file: options.file,
    embedded: e.run,
    distributed: d.run,
    throughputRatio: round(d.run.turnsPerSecond / e.run.turnsPerSecond),
    sameMemoryIds: onlyEmbedded === 0 && onlyDistributed === 0,
    onlyEmbedded,
    onlyDistributed,
    ...searches,
  };
}

export interface SearchAgreement {
  readonly questions: number;
  /** Mean |top-10 ∩ top-10| / 10 over every question. */
  readonly top10Overlap: number;
  /** Questions whose top 10 are the same memories in the same order. */
  readonly identicalTop10: number;
  /** Scored questions (categories 1–4 with gold) where a gold turn is in the top 10: per store and both. */
  readonly goldFound: {
    readonly scored: number;
    readonly embedded: number;
    readonly distributed: number;
    readonly agree: number;
  };
  readonly searchLatency: { readonly sqlite: LatencySummary; readonly elasticsearch: LatencySummary };
}

/**
 * Asks every question of a LoCoMo file through the normal search path of both runtimes (the embedded
 * one on SQLite, the distributed one on Elasticsearch) and compares the top 10s.
 */
export async function compareSearches(
  embedded: Runtime,
  distributed: Runtime,
  options: Pick<DistributedBenchOptions, 'file' | 'tenantId'>,
): Promise<SearchAgreement> {
  const searchOf = (runtime: Runtime): MemorySearch =>
    new MemorySearch(runtime.store, runtime.components.embedder, runtime.config.search);
  const sqlite = searchOf(embedded);
  const elastic = searchOf(distributed);
  const samples = await readLocomoSamples(options.file);
  const latency = { sqlite: [] as number[], elasticsearch: [] as number[] };
  let questions = 0;
  let overlapSum = 0;
  let identical = 0;
  const gold = { scored: 0, embedded: 0, distributed: 0, agree: 0 };
  const timed = async (
    search: MemorySearch,
    into: number[],
    query: Parameters<MemorySearch['search']>[0],
  ): Promise<SearchResult[]> => {
    const started = performance.now();
    const results = await search.search(query);
    into.push(performance.now() - started);
    return results;
  };
  for (const sample of samples) {
    for (const question of sample.questions) {
      const query = {
        scope: { tenantId: options.tenantId, userId: sample.sampleId },
        query: question.question,
        limit: 10,
      };
      // Alternate which store goes first, so neither always gets a warm embedding cache.
      const first = questions % 2 === 0;
      const a = first ? await timed(sqlite, latency.sqlite, query) : undefined;
      const b = await timed(elastic, latency.elasticsearch, query);
      const left = a ?? (await timed(sqlite, latency.sqlite, query));
      questions++;
      const leftIds = left.map((r) => r.id);
      const rightIds = b.map((r) => r.id);
      overlapSum += leftIds.filter((id) => rightIds.includes(id)).length / 10;
      if (leftIds.join() === rightIds.join()) identical++;
      if (!isScoredLocomoCategory(question.category) || question.gold.length === 0) continue;
      gold.scored++;
      const found = (results: SearchResult[]): boolean =>
        results.some((r) => r.sourceTurnIds.some((id) => question.gold.includes(id)));
      const inLeft = found(left);
      const inRight = found(b);
      if (inLeft) gold.embedded++;
      if (inRight) gold.distributed++;
      if (inLeft === inRight) gold.agree++;
    }
  }
  return {
    questions,
    top10Overlap: round(overlapSum / Math.max(1, questions)),
    identicalTop10: identical,
    goldFound: gold,
    searchLatency: {
      sqlite: summarizeLatencies(latency.sqlite),
      elasticsearch: summarizeLatencies(latency.elasticsearch),
    },
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
