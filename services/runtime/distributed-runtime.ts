import { setTimeout as sleep } from 'node:timers/promises';
import { LightmemError, UnavailableError, errorMessage, isRetryable } from '../core/errors.js';
import { withTimeout } from '../core/deadline.js';
import { topicSchemas, type TopicName } from '../core/model/topics.js';
import { KafkaEventLog, kafkaClient } from '../adapters/kafka/kafka-event-log.js';
import { disconnectQuietly } from '../adapters/kafka/disconnect.js';
import {
  applyDeadLetterRetention,
  dataTopicConfigs,
  ensureTopics,
  stateTopicConfig,
  valueSubject,
  type TopicLayout,
} from '../adapters/kafka/kafka-topics.js';
import { registerSchemas, type RegistrationResult } from '../adapters/kafka/registry-codec.js';
import { kafkaSecurityOf, registrySecurityOf } from '../adapters/kafka/kafka-security.js';
import { elasticsearchSecurityOf } from '../adapters/elasticsearch/es-client.js';
import { withoutUrlCredentials, type LightmemConfig } from '../core/config.js';
import { ElasticsearchMemoryStore } from '../adapters/elasticsearch/elasticsearch-memory-store.js';
import { InProcessScheduler } from '../adapters/scheduler/in-process-scheduler.js';
import { TemporalConsolidationTrigger } from '../adapters/temporal/consolidation-trigger.js';
import { runConsolidationOnce } from '../adapters/temporal/consolidation-once.js';
import { runConsolidationWorker } from '../adapters/temporal/consolidation-worker.js';
import { temporalEndpoint } from '../adapters/temporal/consolidation-entity.js';
import { configuredDecider, consolidationDeps, runLimits } from './consolidation-setup.js';
import type { Env } from './extractor-setup.js';
import type {
  ConsolidationScope,
  ConsolidationSummary,
} from '../../workflows/consolidation/activity-types.js';
import { idleFlushJob } from '../../workflows/idle-flush.js';
import { summarizerNudgeJob } from '../../workflows/summarizer-nudges.js';
import {
  isDrained,
  pipelineLag,
  pipelineStages,
  superviseStage,
  type PipelineComponents,
  type StageDefinition,
  type StageLag,
  type StageName,
} from './pipeline.js';
import { configuredComponents } from './embedded-runtime.js';
import type { RuntimeOptions } from './runtime.js';
import { runtimeModels } from './model-loader.js';
import { ElasticsearchLlmLedger } from '../adapters/elasticsearch/elasticsearch-llm-ledger.js';
import type { LlmLedger } from '../core/ports/llm-ledger.js';
import { fusionOf, type DrainOptions, type ReplayParts, type Runtime } from './runtime.js';
import type { PipelineHealth } from './pipeline-health.js';

export function topicLayout(config: LightmemConfig): TopicLayout {
  return {
    prefix: config.kafka.topicPrefix,
    partitions: config.kafka.partitions,
    replicationFactor: config.kafka.replicationFactor,
    deadLetters: {
      retentionMs: Math.round(config.deadLetters.retentionDays * 24 * 3_600_000),
      maxBytes: config.deadLetters.maxBytes,
    },
  };
}

/**
 * What protects each connection, for the start-up log: which mechanisms are on, never a credential
 * (e.g. `kafka: tls+sasl/scram-sha-512, registry: basic, elasticsearch: api-key+ca, temporal: tls+api-key`).
 */
export function securitySummary(config: LightmemConfig): string {
  const kafka = [
    config.kafka.ssl === false ? 'plaintext' : 'tls',
    ...(config.kafka.sasl === undefined ? [] : [`sasl/${config.kafka.sasl.mechanism}`]),
  ].join('+');
  const registry = [
    config.registry.username === undefined ? 'no auth' : 'basic',
    ...(config.registry.tls?.ca === undefined ? [] : ['ca']),
  ].join('+');
  const es = [
    config.elasticsearch.apiKey !== undefined
      ? 'api-key'
      : config.elasticsearch.username !== undefined
        ? 'basic'
        : 'no auth',
    ...(config.elasticsearch.tls?.ca === undefined ? [] : ['ca']),
  ].join('+');
  const temporal = [
    config.temporal.tls === undefined && config.temporal.apiKey === undefined ? 'plaintext' : 'tls',
    ...(config.temporal.tls?.cert === undefined ? [] : ['client-cert']),
    ...(config.temporal.apiKey === undefined ? [] : ['api-key']),
  ].join('+');
  return `kafka: ${kafka}, registry: ${registry}, elasticsearch: ${es}, temporal: ${temporal}`;
}

/** Longest wait for one reading of the pipeline lag before it counts as a retryable failure. */
const lagTimeoutMs = 60_000;

export const stageNames: readonly StageName[] = [
  'compressor',
  'segmenter',
  'summarizer',
  'indexer',
  'applier',
];

/**
 * Distributed mode: the same five stages over Kafka topics (Avro in the schema registry) into
 * Elasticsearch, each stage in its own process (`lightmem service <stage>`), scaled by consumer groups.
 * Front ends (ingest, serve, search, stats) append to and read from the same servers.
 */
export class DistributedRuntime implements Runtime {
  readonly stages: StageDefinition[];
  /** Replay into a new index version is not built for Kafka and Elasticsearch yet. */
  readonly replay: ReplayParts | null;
  readonly isRunningPipeline = false;
  readonly pipelineDescription =
    'the stage services (lightmem service compressor|segmenter|summarizer|indexer|applier)';

  private constructor(
    readonly config: LightmemConfig,
    readonly eventLog: KafkaEventLog,
    readonly store: ElasticsearchMemoryStore,
    readonly components: PipelineComponents,
    readonly warnings: readonly string[],
    private readonly options: RuntimeOptions,
    private readonly closeModels: () => Promise<void>,
    readonly ledger: LlmLedger,
  ) {
    this.stages = pipelineStages(config, components, store, options.clock);
    this.replay = null;
  }

  static async open(config: LightmemConfig, options: RuntimeOptions): Promise<DistributedRuntime> {
    const { models, closeModels } = await runtimeModels(config, options);
    for (const warning of models.warnings) options.logger.warn(warning);
    let log: KafkaEventLog | null = null;
    let ledger: LlmLedger | null = null;
    try {
      log = await KafkaEventLog.open({
        brokers: config.kafka.brokers,
        clientId: config.kafka.clientId,
        registryUrl: config.registry.url,
        registrySecurity: registrySecurityOf(config.registry),
        security: kafkaSecurityOf(config.kafka),
        topics: topicLayout(config),
        instanceId: config.kafka.instanceId,
        logger: options.logger,
        clock: options.clock,
        transactionTimeoutMs: config.kafka.transactionTimeoutMs,
        maxAttempts: config.pipeline.maxAttempts,
        retryBaseMs: config.pipeline.retryBaseMs,
        retryMaxMs: config.pipeline.retryMaxMs,
      });
      const store = await ElasticsearchMemoryStore.open({
        node: config.elasticsearch.node,
        security: elasticsearchSecurityOf(config.elasticsearch),
        indexPrefix: config.elasticsearch.indexPrefix,
        refresh: config.elasticsearch.refresh,
        clock: options.clock,
        fusion: fusionOf(config),
      });
      // Beside the memories: every API replica and stage service sees every call.
      ledger = await ElasticsearchLlmLedger.open({
        node: config.elasticsearch.node,
        security: elasticsearchSecurityOf(config.elasticsearch),
        indexPrefix: config.elasticsearch.indexPrefix,
        answerRetentionDays: config.llm.answerRetentionDays,
      });
      const configured = configuredComponents(config, models, options, ledger);
      const extraction = configured.extraction;
      // The indexer wakes each user's consolidation workflow (lazily connected: unused elsewhere).
      const components: PipelineComponents = {
        ...configured.components,
        consolidationTrigger: config.consolidation.enabled
          ? TemporalConsolidationTrigger.fromConfig(config)
          : null,
      };
      options.logger.info('distributed runtime opened', {
        brokers: config.kafka.brokers.join(','),
        // Addresses only: credentials have settings of their own, and a URL holding some is stripped.
        registry: withoutUrlCredentials(config.registry.url),
        elasticsearch: withoutUrlCredentials(config.elasticsearch.node),
        security: securitySummary(config),
        embedder: components.embedder?.id ?? 'none (lexical search only)',
        extractor: extraction.description,
      });
      const opened = ledger;
      return new DistributedRuntime(
        config,
        log,
        store,
        components,
        models.warnings,
        options,
        async () => {
          await components.consolidationTrigger?.close();
          await opened.close();
          await closeModels();
        },
        opened,
      );
    } catch (error) {
      await log?.close();
      await ledger?.close();
      await closeModels();
      throw error;
    }
  }

  /** Stages run in their own processes; front ends never run them. */
  startPipeline(): boolean {
    return false;
  }

  lag(): Promise<StageLag[]> {
    return pipelineLag(this.eventLog, this.stages);
  }

  /** Ready when every stage's consumer group has a stable member (a `lightmem service` process). */
  async health(): Promise<PipelineHealth> {
    const reasons: string[] = [];
    for (const stage of this.stages) {
      try {
        const members = await withTimeout(
          this.eventLog.stableMembers(stage.name),
          lagTimeoutMs,
          () => new UnavailableError(`describing group ${stage.name} took over ${lagTimeoutMs / 1000} s`),
        );
        if (members === 0)
          reasons.push(`no ${stage.name} service is consuming (lightmem service ${stage.name})`);
      } catch (error) {
        reasons.push(`cannot read the ${stage.name} group: ${errorMessage(error)}`);
      }
    }
    return { ready: reasons.length === 0, pipeline: this.pipelineDescription, reasons };
  }

  async waitForDrain(options: DrainOptions = {}): Promise<void> {
    let lastProgress = Date.now();
    let lastDone = -1;
    let warned = false;
    for (;;) {
      options.signal?.throwIfAborted();
      let lags: StageLag[];
      try {
        // A client that never answers (a broker restarting under it) must not stall the wait forever.
        lags = await withTimeout(
          this.lag(),
          lagTimeoutMs,
          () => new UnavailableError(`reading the pipeline lag took over ${lagTimeoutMs / 1000} s`),
        );
      } catch (error) {
        // A broker restart is not the end of the wait: keep polling until it is back.
        if (!isRetryable(error)) throw error;
        this.options.logger.warn('cannot read the pipeline lag; retrying', { error: errorMessage(error) });
        await sleep(1_000);
        continue;
      }
      options.onProgress?.(lags);
      if (isDrained(lags)) return;
      const done = lags.reduce((sum, lag) => sum + lag.committed, 0);
      if (done !== lastDone) {
        lastDone = done;
        lastProgress = Date.now();
      } else if (!warned && Date.now() - lastProgress > 60_000) {
        warned = true;
        this.options.logger.warn('no stage has made progress for a minute: are the stage services running?', {
          hint: 'lightmem service compressor|segmenter|summarizer|indexer|applier --mode distributed',
        });
      }
      await sleep(options.pollMs ?? 250);
    }
  }

  /**
   * Runs one stage in this process until the signal aborts (SIGTERM: the batch in hand is finished and
   * committed, then the consumer leaves its group). The segmenter also runs the idle-flush job.
   */
  async runStage(name: StageName, signal: AbortSignal): Promise<void> {
    const stage = this.stages.find((s) => s.name === name);
    if (stage === undefined) throw new LightmemError('invalid_input', `no stage ${name}`, { field: 'stage' });
    const scheduler = new InProcessScheduler(this.options.clock, this.options.logger);
    if (name === 'segmenter') {
      scheduler.register(
        idleFlushJob(this.eventLog, {
          idleMs: this.config.pipeline.idleFlushMs,
          intervalMs: this.config.pipeline.idleCheckMs,
        }),
      );
      scheduler.start();
    }
    if (name === 'summarizer') {
      // The summarizer's state is read where it runs: its deferred batches are nudged from here.
      scheduler.register(
        summarizerNudgeJob(this.eventLog, {
          intervalMs: this.config.pipeline.idleCheckMs,
          idleBufferMs: this.config.summarizer.flushAtSessionEnd ? null : this.config.pipeline.idleFlushMs,
        }),
      );
      scheduler.start();
    }
    try {
      await superviseStage(this.eventLog, stage, {
        signal,
        logger: this.options.logger,
      });
    } finally {
      await scheduler.stop();
    }
  }

  /** Consolidates one user now on the consolidator workers (a Temporal workflow), and reports it. */
  consolidate(
    scope: ConsolidationScope,
    options: { dryRun: boolean; signal?: AbortSignal },
  ): Promise<ConsolidationSummary> {
    return runConsolidationOnce(temporalEndpoint(this.config), {
      ...scope,
      ...runLimits(this.config),
      dryRun: options.dryRun,
    });
  }

  /**
   * Runs a consolidation worker in this process (`lightmem service consolidator`) until the signal aborts:
   * the entity and run-once workflows and their activities, over this runtime's store and log.
   */
  async runConsolidator(signal: AbortSignal, env: Env): Promise<void> {
    await runConsolidationWorker({
      ...temporalEndpoint(this.config),
      deps: consolidationDeps({
        config: this.config,
        store: this.store,
        log: this.eventLog,
        embedderId: this.components.embedder?.id ?? null,
        decider: configuredDecider(this.config, env, this.options.clock, this.ledger, this.options.chat),
        clock: this.options.clock,
        logger: this.options.logger,
      }),
      signal,
      logger: this.options.logger,
      maxConcurrentActivities:
        this.config.consolidation.userConcurrency * this.config.consolidation.parallelism,
    });
  }

  async close(): Promise<void> {
    await this.eventLog.close();
    await this.store.close();
    await this.closeModels();
  }
}

export interface AdminInitResult {
  readonly createdTopics: readonly string[];
  readonly schemas: readonly RegistrationResult[];
  readonly index: string;
}

/**
 * The admin step of distributed mode: creates the topics (data topics and each stage's state changelog),
 * registers the Avro schemas with BACKWARD_TRANSITIVE compatibility, and creates the Elasticsearch index
 * template, versioned index and alias. Idempotent.
 */
export async function adminInit(
  config: LightmemConfig,
  options: Pick<RuntimeOptions, 'logger' | 'clock'>,
): Promise<AdminInitResult> {
  const layout = topicLayout(config);
  const kafka = kafkaClient(
    config.kafka.brokers,
    `${config.kafka.clientId}-admin`,
    options.logger,
    kafkaSecurityOf(config.kafka),
  );
  const admin = kafka.admin();
  let createdTopics: string[];
  try {
    await admin.connect();
    createdTopics = await ensureTopics(admin, [
      ...dataTopicConfigs(layout),
      ...stageNames.map((stage) => stateTopicConfig(layout, stage)),
    ]);
    await applyDeadLetterRetention(admin, layout);
  } finally {
    await disconnectQuietly(admin);
  }
  const schemas = await registerSchemas(
    {
      url: config.registry.url,
      subjectOf: (topic) => valueSubject(layout, topic),
      security: registrySecurityOf(config.registry),
    },
    Object.keys(topicSchemas) as TopicName[],
  );
  const store = await ElasticsearchMemoryStore.open({
    node: config.elasticsearch.node,
    security: elasticsearchSecurityOf(config.elasticsearch),
    indexPrefix: config.elasticsearch.indexPrefix,
    clock: options.clock,
  });
  await store.close();
  return { createdTopics, schemas, index: `${config.elasticsearch.indexPrefix}memories` };
}
