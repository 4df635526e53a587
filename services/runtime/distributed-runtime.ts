import { setTimeout as sleep } from 'node:timers/promises';
import { LightmemError, UnavailableError, errorMessage, isRetryable, errorFields } from '../core/errors.js';
import type { ConsolidationDeps } from '../../workflows/consolidation/activities.js';
import type { FirstParts } from './version-set.js';
import { withTimeout } from '../core/deadline.js';
import { retrying } from '../core/backoff.js';
import { Topics, topicSchemas, type TopicName } from '../core/model/topics.js';
import { KafkaEventLog, kafkaClient, type KafkaEventLogOptions } from '../adapters/kafka/kafka-event-log.js';
import { deletePrefixed } from '../adapters/kafka/kafka-cleanup.js';
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
import {
  ElasticsearchMemoryStore,
  type ElasticsearchMemoryStoreOptions,
} from '../adapters/elasticsearch/elasticsearch-memory-store.js';
import { ElasticsearchPipelineVersions } from '../adapters/elasticsearch/es-pipeline-versions.js';
import { RoutedMemoryStore } from '../app/routed-memory-store.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { Clock } from '../core/ports/clock.js';
import { routeOf, servesReads, versionName, type PipelineVersion } from '../core/ports/pipeline-versions.js';
import { versionConfig } from './version-config.js';
import {
  DistributedVersions,
  versionLocation,
  type DistributedVersionParts,
} from './distributed-versions.js';
import { TemporalConsolidationTrigger } from '../adapters/temporal/consolidation-trigger.js';
import { runConsolidationOnce } from '../adapters/temporal/consolidation-once.js';
import { TemporalRunHistories } from '../adapters/temporal/consolidation-histories.js';
import { runConsolidationWorker } from '../adapters/temporal/consolidation-worker.js';
import { temporalEndpoint } from '../adapters/temporal/consolidation-entity.js';
import { configuredDecider, consolidationDeps, runLimits } from './consolidation-setup.js';
import type { Env } from './extractor-setup.js';
import type {
  ConsolidationScope,
  ConsolidationSummary,
} from '../../workflows/consolidation/activity-types.js';
import {
  isDrained,
  pipelineLag,
  pipelineStages,
  type PipelineComponents,
  type StageDefinition,
  type StageLag,
  type StageName,
} from './pipeline.js';
import { configuredComponents } from './embedded-runtime.js';
import type { RuntimeOptions } from './runtime.js';
import { runtimeModels, type RuntimeModels } from './model-loader.js';
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
 * Front ends (ingest, serve, search, stats) append to and read from the same servers. Replays build later
 * pipeline versions beside the first (DistributedVersions): reads go to the version serving each tenant.
 */
export class DistributedRuntime implements Runtime {
  readonly stages: StageDefinition[];
  readonly isRunningPipeline = false;
  readonly pipelineDescription =
    'the stage services (lightmem service compressor|segmenter|summarizer|indexer|applier)';
  /** What API reads go through: the store of the pipeline version that serves each tenant. */
  readonly store: MemoryStore;
  /** The pipeline versions of the deployment (replay), as this process sees them. */
  readonly versions: DistributedVersions;
  /** Features that are off because a model is missing, and how to turn them on. */
  readonly warnings: readonly string[];
  /** The users' consolidation runs on Temporal (erasure deletes them); absent when consolidation is off. */
  readonly runHistories: TemporalRunHistories | undefined;

  private constructor(
    readonly config: LightmemConfig,
    readonly eventLog: KafkaEventLog,
    /** The first pipeline version's store (the deployment's own indices). */
    readonly firstStore: ElasticsearchMemoryStore,
    registry: ElasticsearchPipelineVersions,
    readonly components: PipelineComponents,
    private readonly models: RuntimeModels,
    private readonly options: RuntimeOptions,
    private readonly closeModels: () => Promise<void>,
    readonly ledger: LlmLedger,
  ) {
    this.warnings = models.warnings;
    this.runHistories = config.consolidation.enabled ? TemporalRunHistories.fromConfig(config) : undefined;
    this.stages = pipelineStages(config, components, firstStore, options.clock);
    this.versions = new DistributedVersions({
      registry,
      first: { config, log: eventLog, store: firstStore, components, stages: this.stages },
      open: (version) => this.openLater(version),
      dropFirst: async () => {
        for (const tenantId of await firstStore.tenantIds()) await firstStore.eraseTenant(tenantId);
      },
      deleteLater: (name) => this.deleteLater(name),
      tenants: () => this.tenantIds(),
      clock: options.clock,
      logger: options.logger,
    });
    this.store = new RoutedMemoryStore(
      (tenantId) => this.versions.storeFor(tenantId),
      () => this.versions.everyTenantStore(),
    );
  }

  static async open(config: LightmemConfig, options: RuntimeOptions): Promise<DistributedRuntime> {
    const { models, closeModels } = await runtimeModels(config, options);
    for (const warning of models.warnings) options.logger.warn(warning);
    let log: KafkaEventLog | null = null;
    let store: ElasticsearchMemoryStore | null = null;
    let registry: ElasticsearchPipelineVersions | null = null;
    let ledger: LlmLedger | null = null;
    try {
      log = await KafkaEventLog.open(kafkaLogOptions(config, topicLayout(config), options));
      // A service started while Elasticsearch recovers (shards not assigned yet: 503) waits for it.
      const recovering = {
        attempts: 8,
        baseMs: 500,
        maxMs: 10_000,
        onRetry: (attempt: number, delayMs: number, error: unknown) =>
          options.logger.warn('elasticsearch not ready; retrying', {
            attempt,
            delayMs,
            ...errorFields(error),
          }),
      };
      store = await retrying(
        () => ElasticsearchMemoryStore.open(memoryStoreOptions(config, options.clock)),
        recovering,
      );
      registry = await retrying(
        () =>
          ElasticsearchPipelineVersions.open({
            node: config.elasticsearch.node,
            security: elasticsearchSecurityOf(config.elasticsearch),
            indexPrefix: config.elasticsearch.indexPrefix,
            clock: options.clock,
          }),
        recovering,
      );
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
        registry,
        components,
        models,
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
      await store?.close();
      await registry?.close();
      await ledger?.close();
      await closeModels();
      throw error;
    }
  }

  /** Stages run in their own processes; front ends never run them. */
  startPipeline(): boolean {
    return false;
  }

  /** Lags of what must catch up for appended turns to be searchable: the versions that serve reads. */
  async lag(): Promise<StageLag[]> {
    const plan = await this.versions.running();
    return [
      ...(plan.first ? await pipelineLag(this.eventLog, this.stages) : []),
      ...(await this.versions.servingLags(plan)),
    ];
  }

  /** Ready when every stage of each version serving reads has a stable member (a `lightmem service`). */
  async health(): Promise<PipelineHealth> {
    const reasons: string[] = [];
    const plan = await this.versions.running();
    const serving = [
      ...(plan.first ? [{ log: this.eventLog, label: '' }] : []),
      ...plan.later
        .filter((parts) => servesReads(plan.routes, parts.version.name))
        .map((parts) => ({ log: parts.log, label: ` of ${parts.version.name}` })),
    ];
    for (const { log, label } of serving) {
      for (const stage of this.stages) {
        try {
          const members = await withTimeout(
            log.stableMembers(stage.name),
            lagTimeoutMs,
            () => new UnavailableError(`describing group ${stage.name} took over ${lagTimeoutMs / 1000} s`),
          );
          if (members === 0)
            reasons.push(`no ${stage.name} service is consuming${label} (lightmem service ${stage.name})`);
        } catch (error) {
          reasons.push(`cannot read the ${stage.name} group${label}: ${errorMessage(error)}`);
        }
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
        this.options.logger.warn('cannot read the pipeline lag; retrying', errorFields(error));
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
   * Runs one stage in this process until the signal aborts, for every pipeline version that runs now (see
   * DistributedVersions.runStage).
   */
  runStage(name: StageName, signal: AbortSignal): Promise<void> {
    return this.versions.runStage(name, signal);
  }

  readonly embedderFor = (tenantId: string): Promise<Embedder | null> => this.versions.embedderFor(tenantId);

  /** Replay over the deployment's pipeline versions (registry in Elasticsearch, versions on Kafka). */
  get replay(): ReplayParts {
    const versions = this.versions;
    return versions.replayParts(
      {
        firstStore: this.firstStore,
        deleteData: (name) => versions.deleteData(name),
        tenants: () => this.tenantIds(),
        rawEnd: () => this.eventLog.endOffset(Topics.raw),
      },
      this.options.clock,
    );
  }

  /**
   * Consolidates one user now on the consolidator workers (a Temporal workflow), in the pipeline version
   * that serves the tenant's reads, and reports it.
   */
  async consolidate(
    scope: ConsolidationScope,
    options: { dryRun: boolean; signal?: AbortSignal },
  ): Promise<ConsolidationSummary> {
    const serving = routeOf((await this.versions.current()).routes, scope.tenantId);
    return runConsolidationOnce(temporalEndpoint(this.config), {
      tenantId: scope.tenantId,
      userId: scope.userId,
      ...(serving === versionName(1) ? {} : { version: serving }),
      ...runLimits(this.config),
      dryRun: options.dryRun,
    });
  }

  /**
   * Runs a consolidation worker in this process (`lightmem service consolidator`) until the signal aborts:
   * the entity and run-once workflows and their activities, over the first version's store and log.
   */
  async runConsolidator(signal: AbortSignal, env: Env): Promise<void> {
    const { clock, logger, chat } = this.options;
    const deps = (parts: FirstParts<DistributedVersionParts>): Omit<ConsolidationDeps, 'context'> =>
      consolidationDeps({
        config: parts.config,
        store: parts.store,
        log: parts.log,
        embedderId: parts.components.embedder?.id ?? null,
        decider: configuredDecider(parts.config, env, clock, this.ledger, chat),
        clock,
        logger,
      });
    // A later version's: its store, log, embedder and decider (its own configuration's), made once.
    const later = new Map<string, Omit<ConsolidationDeps, 'context'>>();
    await runConsolidationWorker({
      ...temporalEndpoint(this.config),
      deps: deps({
        config: this.config,
        store: this.firstStore,
        log: this.eventLog,
        components: this.components,
        stages: this.stages,
      }),
      versionDeps: async (name) => {
        const parts = (await this.versions.later()).find((p) => p.version.name === name);
        if (parts === undefined) {
          later.delete(name);
          throw new LightmemError('not_found', `no pipeline version ${name} (dropped?)`, {
            field: 'version',
          });
        }
        const made = later.get(name) ?? deps(parts);
        later.set(name, made);
        return made;
      },
      signal,
      logger,
      maxConcurrentActivities:
        this.config.consolidation.userConcurrency * this.config.consolidation.parallelism,
    });
  }

  async close(): Promise<void> {
    await this.runHistories?.close();
    await this.versions.close();
    await this.eventLog.close();
    await this.firstStore.close();
    await this.closeModels();
  }

  /**
   * Opens a later version: its topics (created and their schemas registered when missing), its indices,
   * its stages, with the configuration it was created with (models shared with this process when that
   * configuration names the same ones). Its memories are not consolidated (consolidation runs on the
   * first version's store).
   */
  private async openLater(version: PipelineVersion): Promise<DistributedVersionParts> {
    const config = versionLocation(versionConfig(this.config, version), version.name);
    await adminInit(config, this.options);
    const sameModels = JSON.stringify(config.models) === JSON.stringify(this.config.models);
    const { models, closeModels } = sameModels
      ? { models: this.models, closeModels: () => Promise.resolve() }
      : await runtimeModels({ ...config, models: { ...config.models, autoFetch: false } }, this.options);
    let log: KafkaEventLog | null = null;
    try {
      // The deployment's keyring: a user's key seals their records in every version.
      const layout = { ...topicLayout(config), keyringPrefix: this.config.kafka.topicPrefix };
      log = await KafkaEventLog.open(kafkaLogOptions(config, layout, this.options));
      const store = await ElasticsearchMemoryStore.open(memoryStoreOptions(config, this.options.clock));
      const { components } = configuredComponents(config, models, this.options, this.ledger);
      const trigger = config.consolidation.enabled
        ? TemporalConsolidationTrigger.fromConfig(config, version.name)
        : null;
      const opened = log;
      return {
        version,
        config,
        log,
        store,
        // Its indexer wakes its own users' workflows, whose runs go to its store and log.
        components: { ...components, consolidationTrigger: trigger },
        stages: pipelineStages(
          config,
          { ...components, consolidationTrigger: trigger },
          store,
          this.options.clock,
        ),
        close: async () => {
          await trigger?.close();
          await store.close();
          await opened.close();
          await closeModels();
        },
      };
    } catch (error) {
      await log?.close();
      await closeModels();
      throw error;
    }
  }

  /** Every tenant with memories in a kept version. */
  private async tenantIds(): Promise<string[]> {
    const stores = [this.firstStore, ...(await this.versions.later()).map((parts) => parts.store)];
    const tenants = new Set<string>();
    for (const store of stores) for (const tenant of await store.tenantIds()) tenants.add(tenant);
    return [...tenants].sort();
  }

  /** Deletes a dropped later version's consumer groups, topics (its copy's state too) and indices. */
  private async deleteLater(name: string): Promise<void> {
    const location = versionLocation(this.config, name);
    const kafka = kafkaClient(
      this.config.kafka.brokers,
      `${this.config.kafka.clientId}-admin`,
      this.options.logger,
      kafkaSecurityOf(this.config.kafka),
    );
    const admin = kafka.admin();
    try {
      await admin.connect();
      // The copy group's state changelog (`<prefix>lightmem.state.vN.copy`, empty) stays: it is a topic of
      // the first version's namespace, and a kafkajs client that knew a deleted topic fails every later
      // metadata request (the first version's log in every compressor service would).
      const removed = await deletePrefixed(admin, { prefix: location.kafka.topicPrefix });
      this.options.logger.info('dropped version: topics and groups deleted', {
        version: name,
        topics: removed.topics.length,
        groups: removed.groups.length,
      });
    } finally {
      await disconnectQuietly(admin);
    }
    const store = await ElasticsearchMemoryStore.open(memoryStoreOptions(location, this.options.clock));
    await store.deleteIndices();
  }
}

/** How a process opens the event log of a topic layout. */
function kafkaLogOptions(
  config: LightmemConfig,
  topics: TopicLayout,
  options: Pick<RuntimeOptions, 'logger' | 'clock'>,
): KafkaEventLogOptions {
  return {
    brokers: config.kafka.brokers,
    clientId: config.kafka.clientId,
    registryUrl: config.registry.url,
    registrySecurity: registrySecurityOf(config.registry),
    security: kafkaSecurityOf(config.kafka),
    topics,
    instanceId: config.kafka.instanceId,
    logger: options.logger,
    clock: options.clock,
    transactionTimeoutMs: config.kafka.transactionTimeoutMs,
    maxAttempts: config.pipeline.maxAttempts,
    retryBaseMs: config.pipeline.retryBaseMs,
    retryMaxMs: config.pipeline.retryMaxMs,
  };
}

/** How a process opens the memory store of a configuration's index prefix. */
function memoryStoreOptions(config: LightmemConfig, clock: Clock): ElasticsearchMemoryStoreOptions {
  return {
    node: config.elasticsearch.node,
    security: elasticsearchSecurityOf(config.elasticsearch),
    indexPrefix: config.elasticsearch.indexPrefix,
    refresh: config.elasticsearch.refresh,
    clock,
    fusion: fusionOf(config),
  };
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
