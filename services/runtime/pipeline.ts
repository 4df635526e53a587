import { setTimeout as sleep } from 'node:timers/promises';
import type { BatchHandler, EventLog } from '../core/ports/event-log.js';
import type { Logger } from '../core/ports/logger.js';
import type { TokenScorer } from '../core/ports/token-scorer.js';
import type { Segmenter } from '../core/ports/segmenter.js';
import type { Extractor } from '../core/ports/extractor.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { ConsolidationTrigger } from '../core/ports/consolidation-trigger.js';
import type { Clock } from '../core/ports/clock.js';
import type { LightmemConfig } from '../core/config.js';
import { Topics, type TopicName } from '../core/model/topics.js';
import { errorMessage, isRetryable, errorFields } from '../core/errors.js';
import { compressorStage } from '../stages/compressor/compressor-stage.js';
import { segmenterStage } from '../stages/segmenter/segmenter-stage.js';
import { summarizerStage } from '../stages/summarizer/summarizer-stage.js';
import { indexerStage } from '../stages/indexer/indexer-stage.js';
import { applierStage } from '../stages/applier/applier-stage.js';
import { backoffMs } from '../core/backoff.js';
import type { StageStatus } from './pipeline-health.js';

export type { StageStatus } from './pipeline-health.js';

export interface PipelineComponents {
  readonly scorer: TokenScorer;
  readonly segmenter: Segmenter;
  readonly extractor: Extractor;
  readonly embedder: Embedder | null;
  /** Wakes sleep-time consolidation when memories land (distributed: Temporal); absent: nobody to wake. */
  readonly consolidationTrigger?: ConsolidationTrigger | null | undefined;
}

export type StageName = 'compressor' | 'segmenter' | 'summarizer' | 'indexer' | 'applier';

export interface StageDefinition {
  readonly name: StageName;
  readonly input: TopicName;
  /** Input records a batch of this stage holds at most (`pipeline.batchSize`, or the stage's own). */
  readonly batchSize: number;
  /** Runs this stage's consumer loop (its consumer group is the stage name) until the signal aborts. */
  readonly consume: (log: EventLog, options: { signal: AbortSignal }) => Promise<void>;
}

/** The one pipeline definition: five stages over ports, in order (the applier applies consolidation's ops). Both runtimes run exactly these. */
export function pipelineStages(
  config: LightmemConfig,
  components: PipelineComponents,
  store: MemoryStore,
  clock: Clock,
): StageDefinition[] {
  function stage<T extends TopicName>(name: StageName, input: T, handler: BatchHandler<T>): StageDefinition {
    const { batchSize: shared, stageBatchSize } = config.pipeline;
    const batchSize = stageBatchSize[name] ?? (name === 'summarizer' ? Math.min(32, shared) : shared);
    return {
      name,
      input,
      batchSize,
      consume: (log, options) => log.consume({ group: name, topic: input, batchSize, ...options }, handler),
    };
  }
  return [
    stage(
      'compressor',
      Topics.raw,
      compressorStage({
        scorer: components.scorer,
        settings: {
          rate: config.compressor.rate,
          maxTokens: config.compressor.maxTurnTokens,
          recompressRate: config.compressor.recompressRate,
          minWords: config.compressor.minWords,
        },
      }),
    ),
    stage(
      'segmenter',
      Topics.compressed,
      segmenterStage({
        segmenter: components.segmenter,
        capacityTokens: config.segmenter.bufferTokens,
        countedRoles: new Set(config.segmenter.countedRoles),
      }),
    ),
    stage(
      'summarizer',
      Topics.segments,
      summarizerStage({
        extractor: components.extractor,
        thresholdTokens: config.summarizer.thresholdTokens,
        countedRoles: new Set(config.summarizer.countedRoles),
        embedderId: components.embedder?.id ?? null,
        clock,
        flushAtSessionEnd: config.summarizer.flushAtSessionEnd,
      }),
    ),
    stage(
      'indexer',
      Topics.memories,
      indexerStage({ store, embedder: components.embedder, trigger: components.consolidationTrigger }),
    ),
    stage('applier', Topics.memoryOps, applierStage({ store, embedder: components.embedder })),
  ];
}

export interface SuperviseOptions {
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Backoff between restarts after retryable failures: base doubling up to max (default 1 s … 30 s). */
  readonly restartBaseMs?: number;
  readonly restartMaxMs?: number;
  /** Told each time a stage starts, restarts or fails. */
  readonly onStatus?: ((stage: StageName, status: StageStatus) => void) | undefined;
}

/** A stage that ran this long before failing starts its backoff over: the outage was a new one. */
const healthyRunMs = 60_000;

/**
 * Runs one stage's consumer loop until the signal aborts. A retryable failure that outlasted the adapter's
 * own retries (a broker or store outage longer than they ride out) restarts the loop after a backoff rather
 * than ending the process: the loop resumes from the last committed batch, so nothing is lost or doubled.
 * A non-retryable failure (a bug, a configuration the server refuses) ends it with the error; a failure
 * while stopping is logged, not thrown.
 */
export async function superviseStage(
  log: EventLog,
  stage: StageDefinition,
  options: SuperviseOptions,
): Promise<void> {
  const base = options.restartBaseMs ?? 1_000;
  const max = options.restartMaxMs ?? 30_000;
  let failures = 0;
  for (;;) {
    const started = Date.now();
    try {
      options.onStatus?.(stage.name, { state: 'running' });
      await stage.consume(log, { signal: options.signal });
      return;
    } catch (error) {
      if (options.signal.aborted) {
        options.logger.warn('stage failed while stopping', { stage: stage.name, ...errorFields(error) });
        return;
      }
      if (!isRetryable(error)) {
        options.logger.error('stage stopped', {
          stage: stage.name,
          ...errorFields(error),
        });
        options.onStatus?.(stage.name, { state: 'failed', error: errorMessage(error) });
        throw error;
      }
      failures = Date.now() - started >= healthyRunMs ? 1 : failures + 1;
      const delayMs = backoffMs(failures, base, max, 0.2);
      options.onStatus?.(stage.name, { state: 'restarting', attempt: failures, error: errorMessage(error) });
      options.logger.warn('stage failed; restarting it', {
        stage: stage.name,
        attempt: failures,
        delayMs,
        ...errorFields(error),
      });
      await sleep(delayMs, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
}

/**
 * Runs every stage's consumer loop (supervised) until the signal aborts. When one stage fails for good,
 * the others are stopped too (a pipeline with a dead stage would only pile up work behind it) and the
 * failure is thrown once all have stopped.
 */
export async function runStages(
  log: EventLog,
  stages: readonly StageDefinition[],
  options: SuperviseOptions,
): Promise<void> {
  const stopAll = new AbortController();
  const signal = AbortSignal.any([options.signal, stopAll.signal]);
  let failure: { error: unknown } | null = null;
  await Promise.all(
    stages.map((stage) =>
      superviseStage(log, stage, { ...options, signal }).catch((error: unknown) => {
        failure ??= { error };
        stopAll.abort();
      }),
    ),
  );
  if (failure !== null) throw (failure as { error: unknown }).error;
}

export interface StageLag {
  readonly stage: string;
  readonly topic: TopicName;
  readonly committed: number;
  readonly end: number;
}

/** Lag of every stage, read in pipeline order (so work in flight between two stages is never missed). */
export async function pipelineLag(log: EventLog, stages: readonly StageDefinition[]): Promise<StageLag[]> {
  const lags: StageLag[] = [];
  for (const stage of stages) {
    const committed = await log.committedOffset(stage.name, stage.input);
    const end = await log.endOffset(stage.input);
    lags.push({ stage: stage.name, topic: stage.input, committed, end });
  }
  return lags;
}

export function isDrained(lags: readonly StageLag[]): boolean {
  return lags.every((lag) => lag.committed >= lag.end);
}
