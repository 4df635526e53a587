import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightmemConfig } from '../core/config.js';
import type { EventLog } from '../core/ports/event-log.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import { LightmemError } from '../core/errors.js';
import { Topics } from '../core/model/topics.js';
import { SqliteEventLog } from '../adapters/sqlite/sqlite-event-log.js';
import { SqliteMemoryStore } from '../adapters/sqlite/sqlite-memory-store.js';
import { OwnerLock } from '../adapters/sqlite/owner-lock.js';
import { InProcessScheduler } from '../adapters/scheduler/in-process-scheduler.js';
import { BuiltinTokenScorer } from '../stages/compressor/builtin-token-scorer.js';
import { SessionSegmenter } from '../stages/segmenter/session-segmenter.js';
import { SimilaritySegmenter } from '../stages/segmenter/similarity-segmenter.js';
import type { Extractor } from '../core/ports/extractor.js';
import type { LlmLedger } from '../core/ports/llm-ledger.js';
import { configuredExtractor, openLedger, type ExtractorChoice } from './extractor-setup.js';
import { idleFlushJob } from '../../workflows/idle-flush.js';
import { summarizerNudgeJob } from '../../workflows/summarizer-nudges.js';
import { PipelineOwnership } from './pipeline-ownership.js';
import type { PipelineHealth } from './pipeline-health.js';
import { WorkerPipelineRunner } from './worker-pipeline-runner.js';
import {
  isDrained,
  pipelineLag,
  pipelineStages,
  runStages,
  type PipelineComponents,
  type StageDefinition,
  type StageLag,
} from './pipeline.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { TokenScorer } from '../core/ports/token-scorer.js';
import type { AttentionModel } from '../core/ports/segmenter.js';
import { HybridSegmenter, hybridSettingsFrom } from '../stages/segmenter/hybrid-segmenter.js';
import { runtimeModels } from './model-loader.js';
import { InProcessConsolidation, inProcessConsolidationOptions } from './in-process-consolidation.js';
import { configuredDecider, consolidationDeps } from './consolidation-setup.js';
import type {
  ConsolidationScope,
  ConsolidationSummary,
} from '../../workflows/consolidation/activity-types.js';
import { fusionOf } from './runtime.js';
import { CachingEmbedder } from './caching-embedder.js';
import type { DrainOptions, Runtime, RuntimeOptions } from './runtime.js';

/** The pipeline's components over the given models and extractor (built-ins where a model is missing). */
export function embeddedComponents(
  config: LightmemConfig,
  embedder: Embedder | null,
  attention: AttentionModel | null,
  /** An LLMLingua-2 model (`models.compressor`); null: the built-in heuristic scorer. */
  scorer: TokenScorer | null,
  /** The summarizer's extractor (`configuredExtractor`). */
  extractor: Extractor,
): PipelineComponents {
  const settings = hybridSettingsFrom(config.segmenter);
  // Shared by segmenter (a buffer's carried tail is embedded again at the next cut), indexer (a memory
  // re-indexed on replay) and search (repeated queries). Segmenter units and memory texts differ.
  const cached = embedder === null ? null : new CachingEmbedder(embedder, config.models.embeddingCache);
  return {
    scorer: scorer ?? new BuiltinTokenScorer(),
    segmenter:
      embedder === null
        ? new SessionSegmenter()
        : attention === null
          ? new SimilaritySegmenter(cached ?? embedder, settings)
          : new HybridSegmenter(attention, cached ?? embedder, settings),
    extractor,
    embedder: cached,
  };
}

/**
 * The components of either runtime as configured: the models given, the configured extractor (its LLM
 * calls recorded in `ledger`), wrapped as the options say (a benchmark's dry run).
 */
export function configuredComponents(
  config: LightmemConfig,
  models: { embedder: Embedder | null; attention: AttentionModel | null; scorer: TokenScorer | null },
  options: RuntimeOptions,
  ledger: LlmLedger,
): { components: PipelineComponents; extraction: ExtractorChoice } {
  const extraction = configuredExtractor(config, options.env ?? {}, options.clock, ledger, options.chat);
  const extractor = options.wrapExtractor?.(extraction.extractor, config) ?? extraction.extractor;
  return {
    components: embeddedComponents(config, models.embedder, models.attention, models.scorer, extractor),
    extraction,
  };
}

/**
 * The embedded default: SQLite log + SQLite store + in-process scheduler, all in one process. Several
 * processes may open one data dir (two `serve`, an `ingest`); exactly one of them runs the pipeline (the
 * owner lock, see PipelineOwnership), the others append and read, and take the pipeline over within
 * seconds when its owner dies.
 */
export class EmbeddedRuntime implements Runtime {
  readonly stages: StageDefinition[];
  private readonly ownership: PipelineOwnership;
  private readonly scheduler: InProcessScheduler;
  private readonly consolidation: InProcessConsolidation;

  private constructor(
    readonly config: LightmemConfig,
    readonly log: SqliteEventLog,
    readonly store: MemoryStore,
    readonly components: PipelineComponents,
    /** Features that are off because a model is missing, and how to turn them on. */
    readonly warnings: readonly string[],
    /** The encoder attention used by the segmenter, when installed (benchmarks use it directly). */
    readonly attention: AttentionModel | null,
    private readonly options: RuntimeOptions,
    private readonly closeModels: () => Promise<void>,
    /** The cost ledger of the data dir's LLM calls. */
    readonly ledger: LlmLedger,
  ) {
    this.stages = pipelineStages(config, components, store, options.clock);
    this.scheduler = new InProcessScheduler(options.clock, options.logger);
    this.scheduler.register(
      idleFlushJob(log, { idleMs: config.pipeline.idleFlushMs, intervalMs: config.pipeline.idleCheckMs }),
    );
    this.scheduler.register(
      summarizerNudgeJob(log, {
        intervalMs: config.pipeline.idleCheckMs,
        idleBufferMs: config.summarizer.flushAtSessionEnd ? null : config.pipeline.idleFlushMs,
      }),
    );
    this.consolidation = new InProcessConsolidation(
      consolidationDeps({
        config,
        store,
        log,
        embedderId: components.embedder?.id ?? null,
        decider: configuredDecider(config, options.env ?? {}, options.clock, ledger, options.chat),
        clock: options.clock,
        logger: options.logger,
      }),
      inProcessConsolidationOptions(config, options.clock, options.logger),
    );
    // Sleep-time work belongs to the long-running process (`lightmem serve`): a batch command (ingest, bench)
    // that runs the pipeline leaves it, so what it makes does not depend on when a run happened to start.
    // Its memories stay pending in the store and the next server (or `lightmem consolidate`) takes them.
    if (config.consolidation.enabled && options.serving === true) {
      this.scheduler.register(this.consolidation.job(config.consolidation.checkMs));
    }
    this.scheduler.register({
      name: 'dead-letter-retention',
      intervalMs: retentionCheckMs,
      run: () => Promise.resolve(log.enforceRetention()),
    });
    const pipeline = config.pipeline;
    // Models given in code (tests) cannot cross into a thread: the stages then run on this one.
    const isolation =
      pipeline.isolation === 'auto' ? (options.serving === true ? 'worker' : 'inline') : pipeline.isolation;
    const inWorker = isolation === 'worker' && options.models === undefined;
    this.ownership = new PipelineOwnership(
      new OwnerLock(log.database, 'embedded-pipeline', pipeline.ownerStaleMs),
      inWorker
        ? new WorkerPipelineRunner(config, options.logger, options.env)
        : {
            run: (signal, onStatus) =>
              runStages(log, this.stages, {
                signal,
                logger: options.logger,
                onStatus,
              }),
          },
      {
        clock: options.clock,
        logger: options.logger,
        heartbeatMs: pipeline.heartbeatMs,
        takeoverCheckMs: pipeline.takeoverCheckMs,
        failureCooldownMs: pipeline.failureCooldownMs,
        onOwned: () => this.scheduler.start(),
        onReleased: () => this.scheduler.stop(),
      },
    );
  }

  static async open(config: LightmemConfig, options: RuntimeOptions): Promise<EmbeddedRuntime> {
    const { models: loaded, closeModels } = await runtimeModels(config, options);
    for (const warning of loaded.warnings) options.logger.warn(warning);
    const log = SqliteEventLog.open(join(config.dataDir, 'log.db'), {
      logger: options.logger,
      clock: options.clock,
      busyTimeoutMs: config.sqlite.busyTimeoutMs,
      maxAttempts: config.pipeline.maxAttempts,
      retryBaseMs: config.pipeline.retryBaseMs,
      retryMaxMs: config.pipeline.retryMaxMs,
      retention: {
        [Topics.deadLetters]: {
          maxBytes: config.deadLetters.maxBytes,
          maxAgeMs: config.deadLetters.retentionDays * dayMs,
        },
      },
    });
    const store = SqliteMemoryStore.open(join(config.dataDir, 'memories.db'), {
      fusion: fusionOf(config),
      busyTimeoutMs: config.sqlite.busyTimeoutMs,
    });
    const ledger = openLedger(config, join(config.dataDir, 'ledger.db'));
    const { components, extraction } = configuredComponents(config, loaded, options, ledger);
    options.logger.info('embedded runtime opened', {
      dataDir: config.dataDir,
      segmenter: components.segmenter.capability,
      embedder: components.embedder?.id ?? 'none (lexical search only)',
      scorer: components.scorer.version,
      extractor: extraction.description,
    });
    return new EmbeddedRuntime(
      config,
      log,
      store,
      components,
      loaded.warnings,
      loaded.attention,
      options,
      async () => {
        await ledger.close();
        await closeModels();
      },
      ledger,
    );
  }

  get eventLog(): EventLog {
    return this.log;
  }

  get isRunningPipeline(): boolean {
    return this.ownership.isOwner;
  }

  get pipelineDescription(): string {
    return this.ownership.isOwner
      ? 'this process'
      : `another lightmem process (${this.ownership.health().pipeline})`;
  }

  /**
   * Takes part in running the pipeline: starts the stages if no other live process runs them, and from
   * then on takes them over when their owner dies. Returns whether this process runs them now.
   */
  startPipeline(): boolean {
    return this.ownership.start();
  }

  /** Stops the stages if this process runs them, releases them to the other processes, stops taking part. */
  async stopPipeline(): Promise<void> {
    await this.ownership.stop();
  }

  health(): Promise<PipelineHealth> {
    return Promise.resolve(this.ownership.health());
  }

  lag(): Promise<StageLag[]> {
    return pipelineLag(this.log, this.stages);
  }

  /**
   * Resolves when every stage has caught up. Waiting takes part in running the pipeline (so a dead owner
   * is taken over); it fails when the pipeline fails for good in this process meanwhile.
   */
  async waitForDrain(options: DrainOptions = {}): Promise<void> {
    const since = this.options.clock.now();
    if (!this.ownership.isStarted) this.startPipeline();
    for (;;) {
      options.signal?.throwIfAborted();
      const lags = await this.lag();
      options.onProgress?.(lags);
      if (isDrained(lags)) return;
      const failure = this.ownership.failedSince(since);
      if (failure !== null) {
        throw new LightmemError('internal', `the pipeline stopped before it caught up: ${failure}`);
      }
      await sleep(options.pollMs ?? 50);
    }
  }

  /**
   * Consolidates one user now, in this process. The ops are applied by the applier stage, so this process
   * takes part in running the pipeline (another process may run it: its applier applies them).
   */
  async consolidate(
    scope: ConsolidationScope,
    options: { dryRun: boolean; signal?: AbortSignal },
  ): Promise<ConsolidationSummary> {
    if (!options.dryRun && !this.ownership.isStarted) this.startPipeline();
    return this.consolidation.run(scope, options);
  }

  async close(): Promise<void> {
    await this.stopPipeline();
    await this.store.close();
    await this.log.close();
    await this.closeModels();
  }
}

const dayMs = 24 * 3_600_000;
/** How often the owner deletes dead letters past their retention when none arrive (arrivals prune too). */
const retentionCheckMs = 3_600_000;
