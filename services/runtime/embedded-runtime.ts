import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightmemConfig } from '../core/config.js';
import type { EventLog } from '../core/ports/event-log.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import { errorMessage } from '../core/errors.js';
import { SqliteEventLog } from '../adapters/sqlite/sqlite-event-log.js';
import { SqliteMemoryStore } from '../adapters/sqlite/sqlite-memory-store.js';
import { OwnerLock } from '../adapters/sqlite/owner-lock.js';
import { InProcessScheduler } from '../adapters/scheduler/in-process-scheduler.js';
import { BuiltinTokenScorer } from '../stages/compressor/builtin-token-scorer.js';
import { SessionSegmenter } from '../stages/segmenter/session-segmenter.js';
import { SimilaritySegmenter } from '../stages/segmenter/similarity-segmenter.js';
import { ExtractiveExtractor } from '../stages/summarizer/extractive-extractor.js';
import { idleFlushJob } from '../../workflows/idle-flush.js';
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
import { fusionOf } from './runtime.js';
import { CachingEmbedder } from './caching-embedder.js';
import type { DrainOptions, Runtime, RuntimeOptions } from './runtime.js';

/** Built-in components: everything that works with no model and no LLM. */
export function embeddedComponents(
  config: LightmemConfig,
  embedder: Embedder | null,
  attention: AttentionModel | null,
  /** An LLMLingua-2 model (`models.compressor`); null: the built-in heuristic scorer. */
  scorer: TokenScorer | null = null,
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
    extractor: new ExtractiveExtractor({
      memorizeRoles: new Set(config.summarizer.memorizeRoles),
      granularity: config.summarizer.granularity,
    }),
    embedder: cached,
  };
}

/**
 * The embedded default: SQLite log + SQLite store + in-process scheduler, all in one process. Several
 * processes may open one data dir (serve + ingest); exactly one of them runs the pipeline (owner lock),
 * the others append and read.
 */
export class EmbeddedRuntime implements Runtime {
  readonly stages: StageDefinition[];
  private readonly lock: OwnerLock;
  private running: { controller: AbortController; done: Promise<void>; heartbeat: NodeJS.Timeout } | null =
    null;
  private readonly scheduler: InProcessScheduler;

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
  ) {
    this.stages = pipelineStages(config, components, store, options.clock);
    this.lock = new OwnerLock(log.database, 'embedded-pipeline');
    this.scheduler = new InProcessScheduler(options.clock, options.logger);
    this.scheduler.register(
      idleFlushJob(log, { idleMs: config.pipeline.idleFlushMs, intervalMs: config.pipeline.idleCheckMs }),
    );
  }

  static async open(config: LightmemConfig, options: RuntimeOptions): Promise<EmbeddedRuntime> {
    const { models: loaded, closeModels } = await runtimeModels(config, options);
    for (const warning of loaded.warnings) options.logger.warn(warning);
    const log = SqliteEventLog.open(join(config.dataDir, 'log.db'), {
      logger: options.logger,
      clock: options.clock,
    });
    const store = SqliteMemoryStore.open(join(config.dataDir, 'memories.db'), {
      fusion: fusionOf(config),
    });
    const components = embeddedComponents(config, loaded.embedder, loaded.attention, loaded.scorer);
    options.logger.info('embedded runtime opened', {
      dataDir: config.dataDir,
      segmenter: components.segmenter.capability,
      embedder: components.embedder?.id ?? 'none (lexical search only)',
      scorer: components.scorer.version,
    });
    return new EmbeddedRuntime(
      config,
      log,
      store,
      components,
      loaded.warnings,
      loaded.attention,
      options,
      closeModels,
    );
  }

  get eventLog(): EventLog {
    return this.log;
  }

  get isRunningPipeline(): boolean {
    return this.running !== null;
  }

  get pipelineDescription(): string {
    return this.running !== null ? 'this process' : 'another lightmem process (serve)';
  }

  /** Starts the stages if no other live process runs them; returns whether this process does. */
  startPipeline(): boolean {
    if (this.running !== null) return true;
    if (!this.lock.tryAcquire(this.options.clock.now())) return false;
    const controller = new AbortController();
    const heartbeat = setInterval(() => {
      if (!this.lock.heartbeat(this.options.clock.now())) {
        this.options.logger.error('pipeline ownership lost; stopping stages');
        controller.abort();
      }
    }, 3_000);
    heartbeat.unref();
    const done = runStages(this.log, this.stages, {
      signal: controller.signal,
      batchSize: this.config.pipeline.batchSize,
      logger: this.options.logger,
    }).catch((error: unknown) => {
      this.options.logger.error('pipeline stopped', { error: errorMessage(error) });
    });
    this.scheduler.start();
    this.running = { controller, done, heartbeat };
    return true;
  }

  async stopPipeline(): Promise<void> {
    const running = this.running;
    if (running === null) return;
    this.running = null;
    running.controller.abort();
    clearInterval(running.heartbeat);
    await this.scheduler.stop();
    await running.done;
    this.lock.release();
  }

  lag(): Promise<StageLag[]> {
    return pipelineLag(this.log, this.stages);
  }

  /**
   * Resolves when every stage has caught up. If the process running the pipeline dies meanwhile, this
   * process takes over, so waiting never hangs on a dead owner.
   */
  async waitForDrain(options: DrainOptions = {}): Promise<void> {
    for (;;) {
      options.signal?.throwIfAborted();
      const lags = await this.lag();
      options.onProgress?.(lags);
      if (isDrained(lags)) return;
      if (this.running === null) this.startPipeline();
      await sleep(options.pollMs ?? 50);
    }
  }

  async close(): Promise<void> {
    await this.stopPipeline();
    await this.store.close();
    await this.log.close();
    await this.closeModels();
  }
}
