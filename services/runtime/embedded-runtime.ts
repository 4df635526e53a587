import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightmemConfig } from '../core/config.js';
import type { EventLog } from '../core/ports/event-log.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import { LightmemError } from '../core/errors.js';
import { pruneConsumedRecords } from './log-pruning.js';
import { Topics } from '../core/model/topics.js';
import { SqliteEventLog } from '../adapters/sqlite/sqlite-event-log.js';
import { SqliteMemoryStore } from '../adapters/sqlite/sqlite-memory-store.js';
import { OwnerLock } from '../adapters/sqlite/owner-lock.js';
import { SqlitePipelineVersions } from '../adapters/sqlite/sqlite-pipeline-versions.js';
import type { PipelineVersion } from '../core/ports/pipeline-versions.js';
import { RoutedMemoryStore } from '../app/routed-memory-store.js';
import { EmbeddedVersions, versionDir, type EmbeddedVersionParts } from './embedded-versions.js';
import { versionConfig } from './version-config.js';
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
  type SuperviseOptions,
} from './pipeline.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { TokenScorer } from '../core/ports/token-scorer.js';
import type { AttentionModel } from '../core/ports/segmenter.js';
import { HybridSegmenter, hybridSettingsFrom } from '../stages/segmenter/hybrid-segmenter.js';
import { runtimeModels, type RuntimeModels } from './model-loader.js';
import { InProcessConsolidation, inProcessConsolidationOptions } from './in-process-consolidation.js';
import { configuredDecider, consolidationDeps } from './consolidation-setup.js';
import type {
  ConsolidationScope,
  ConsolidationSummary,
} from '../../workflows/consolidation/activity-types.js';
import { fusionOf } from './runtime.js';
import { CachingEmbedder } from './caching-embedder.js';
import type { DrainOptions, ReplayParts, Runtime, RuntimeOptions } from './runtime.js';

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
  /** Features that are off because a model is missing, and how to turn them on. */
  readonly warnings: readonly string[];
  /** The encoder attention used by the segmenter, when installed (benchmarks use it directly). */
  readonly attention: AttentionModel | null;
  /** What API reads go through: the store of the pipeline version that serves each tenant. */
  readonly store: MemoryStore;
  /** The pipeline versions of the data dir (replay), as this process sees them. */
  readonly versions: EmbeddedVersions;
  private readonly ownership: PipelineOwnership;
  private readonly scheduler: InProcessScheduler;
  private readonly consolidation: InProcessConsolidation;

  private constructor(
    readonly config: LightmemConfig,
    readonly log: SqliteEventLog,
    /** The store of the data dir's first pipeline version (`memories.db`). */
    readonly firstStore: SqliteMemoryStore,
    registry: SqlitePipelineVersions,
    readonly components: PipelineComponents,
    /** The models this process loaded (later versions with the same models configuration share them). */
    private readonly models: RuntimeModels,
    private readonly options: RuntimeOptions,
    private readonly closeModels: () => Promise<void>,
    /** The cost ledger of the data dir's LLM calls. */
    readonly ledger: LlmLedger,
  ) {
    const store = firstStore;
    this.warnings = models.warnings;
    this.attention = models.attention;
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
      const job = this.consolidation.job(config.consolidation.checkMs);
      // Version 1 consolidates while its pipeline runs (it serves reads): its applier applies the ops.
      this.scheduler.register({
        ...job,
        run: async (context) => {
          if ((await this.versions.running()).first) await job.run(context);
        },
      });
    }
    this.versions = new EmbeddedVersions({
      registry,
      first: { config, log, store, components, stages: this.stages, consolidation: this.consolidation },
      open: (version) => this.openLater(version),
      dropFirst: async () => {
        for (const tenantId of log.tenants()) await firstStore.eraseTenant(tenantId);
        log.dropDerived(
          [Topics.compressed, Topics.segments, Topics.memories, Topics.memoryOps],
          this.stages.map((stage) => stage.name),
        );
      },
      dataDir: config.dataDir,
      logger: options.logger,
    });
    this.store = new RoutedMemoryStore(
      (tenantId) => this.versions.storeFor(tenantId),
      () => this.versions.everyTenantStore(),
    );
    for (const job of this.versions.jobs({
      idleMs: config.pipeline.idleFlushMs,
      intervalMs: config.pipeline.idleCheckMs,
      consolidationMs: options.serving === true ? config.consolidation.checkMs : null,
      pruneMs: config.sqlite.pruneConsumedMs > 0 ? config.sqlite.pruneConsumedMs : null,
    })) {
      this.scheduler.register(job);
    }
    this.scheduler.register({
      name: 'dead-letter-retention',
      intervalMs: retentionCheckMs,
      run: () => Promise.resolve(log.enforceRetention()),
    });
    if (config.sqlite.pruneConsumedMs > 0) {
      this.scheduler.register({
        name: 'log-pruning',
        intervalMs: config.sqlite.pruneConsumedMs,
        run: async ({ signal }) => {
          await this.pruneConsumed(signal);
        },
      });
    }
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
            run: (signal, onStatus) => this.runPipelines(signal, onStatus),
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
    const { log, store } = openLogAndStore(config, config.dataDir, options);
    const registry = SqlitePipelineVersions.open(join(config.dataDir, 'versions.db'), {
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
      registry,
      components,
      loaded,
      options,
      async () => {
        await ledger.close();
        await closeModels();
      },
      ledger,
    );
  }

  /**
   * What the pipeline owner runs, until the signal aborts: the first version's stages while it serves
   * reads, and each later version that builds or serves (its copy of the raw log and its stages). When
   * versions change (a replay starts, reads switch, a version is dropped) the set is restarted: every
   * stage resumes from its committed offsets, so nothing is lost or done twice.
   */
  async runPipelines(signal: AbortSignal, onStatus?: SuperviseOptions['onStatus']): Promise<void> {
    const logger = this.options.logger;
    while (!signal.aborted) {
      // Versions dropped since the last run are not running now: their files can go.
      await this.versions.purgeDropped();
      const generation = (await this.versions.current(true)).generation;
      const plan = await this.versions.running();
      const changed = new AbortController();
      const both = AbortSignal.any([signal, changed.signal]);
      const watch = (async () => {
        while (!both.aborted) {
          await sleep(versionCheckMs, undefined, { signal: both }).catch(() => undefined);
          if (!both.aborted && (await this.versions.current(true)).generation !== generation) changed.abort();
        }
      })();
      try {
        await Promise.all([
          plan.first
            ? runStages(this.log, this.stages, { signal: both, logger, onStatus })
            : Promise.resolve(),
          ...plan.later.map((parts) => this.versions.run(parts, both)),
        ]);
      } catch (error) {
        changed.abort();
        await watch;
        throw error;
      }
      changed.abort();
      await watch;
    }
  }

  readonly embedderFor = (tenantId: string): Promise<Embedder | null> => this.versions.embedderFor(tenantId);

  /** Replay over this data dir's pipeline versions. */
  get replay(): ReplayParts {
    return this.versions.replayParts(
      {
        firstStore: this.firstStore,
        deleteData: (name) => this.versions.deleteFiles(name),
        tenants: () => Promise.resolve(this.log.tenants()),
        rawEnd: () => this.log.endOffset(Topics.raw),
      },
      this.options.clock,
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
    const owned = this.ownership.isOwner;
    await this.ownership.stop();
    // What the stages consumed since the last pruning goes now (a batch command's last minute of work).
    if (owned && this.config.sqlite.pruneConsumedMs > 0) await this.pruneConsumed();
  }

  /** The first version's consumed intermediate records (see pruneConsumedRecords). */
  private pruneConsumed(signal?: AbortSignal): Promise<void> {
    return pruneConsumedRecords(this.log, this.stages, this.options.logger, signal);
  }

  health(): Promise<PipelineHealth> {
    return Promise.resolve(this.ownership.health());
  }

  /** Lags of what must catch up for ingested turns to be searchable: the versions that serve reads. */
  async lag(): Promise<StageLag[]> {
    const plan = await this.versions.running();
    return [
      ...(plan.first ? await pipelineLag(this.log, this.stages) : []),
      ...(await this.versions.servingLags(plan)),
    ];
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
    // The version that serves the tenant's reads (a later one after `replay switch`).
    return (await this.versions.servingOf(scope.tenantId)).consolidation.run(scope, options);
  }

  /**
   * Opens a later version's parts under `versions/<name>/`, with the configuration it was created with
   * (models shared with this process when that configuration names the same ones).
   */
  private async openLater(version: PipelineVersion): Promise<EmbeddedVersionParts> {
    const config = versionConfig(this.config, version);
    const sameModels = JSON.stringify(config.models) === JSON.stringify(this.config.models);
    const { models, closeModels } = sameModels
      ? { models: this.models, closeModels: () => Promise.resolve() }
      : await runtimeModels({ ...config, models: { ...config.models, autoFetch: false } }, this.options);
    const { log, store } = openLogAndStore(
      config,
      versionDir(this.config.dataDir, version.name),
      this.options,
    );
    const { components } = configuredComponents(config, models, this.options, this.ledger);
    const stages = pipelineStages(config, components, store, this.options.clock);
    const consolidation = new InProcessConsolidation(
      consolidationDeps({
        config,
        store,
        log,
        embedderId: components.embedder?.id ?? null,
        decider: configuredDecider(
          config,
          this.options.env ?? {},
          this.options.clock,
          this.ledger,
          this.options.chat,
        ),
        clock: this.options.clock,
        logger: this.options.logger,
      }),
      inProcessConsolidationOptions(config, this.options.clock, this.options.logger),
    );
    return {
      version,
      config,
      log,
      store,
      components,
      stages,
      consolidation,
      close: async () => {
        await store.close();
        await log.close();
        await closeModels();
      },
    };
  }

  async close(): Promise<void> {
    await this.stopPipeline();
    await this.versions.close();
    await this.firstStore.close();
    await this.log.close();
    await this.closeModels();
  }
}

const dayMs = 24 * 3_600_000;
/** How often the owner deletes dead letters past their retention when none arrive (arrivals prune too). */
const retentionCheckMs = 3_600_000;

/** How often the pipeline owner looks for version changes made by other processes. */
const versionCheckMs = 1_000;

/** The event log and memory store of one pipeline version, in `dir`. */
function openLogAndStore(
  config: LightmemConfig,
  dir: string,
  options: RuntimeOptions,
): { log: SqliteEventLog; store: SqliteMemoryStore } {
  const log = SqliteEventLog.open(join(dir, 'log.db'), {
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
  const store = SqliteMemoryStore.open(join(dir, 'memories.db'), {
    fusion: fusionOf(config),
    busyTimeoutMs: config.sqlite.busyTimeoutMs,
  });
  return { log, store };
}
