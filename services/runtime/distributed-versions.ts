import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../core/ports/clock.js';
import type { Logger } from '../core/ports/logger.js';
import { LightmemError, isRetryable, errorFields } from '../core/errors.js';
import { Topics } from '../core/model/topics.js';
import { versionName } from '../core/ports/pipeline-versions.js';
import type { LightmemConfig } from '../core/config.js';
import type { KafkaEventLog } from '../adapters/kafka/kafka-event-log.js';
import type { ElasticsearchMemoryStore } from '../adapters/elasticsearch/elasticsearch-memory-store.js';
import type { ElasticsearchPipelineVersions } from '../adapters/elasticsearch/es-pipeline-versions.js';
import { InProcessScheduler } from '../adapters/scheduler/in-process-scheduler.js';
import { followRawLog } from '../app/raw-log-copy.js';
import { idleFlushJob } from '../../workflows/idle-flush.js';
import { summarizerNudgeJob } from '../../workflows/summarizer-nudges.js';
import { superviseStage, type StageName } from './pipeline.js';
import {
  VersionSet,
  together,
  type FirstParts,
  type VersionParts,
  type VersionSetDeps,
} from './version-set.js';

/** One pipeline version opened in this process (distributed: its own topics and indices). */
export interface DistributedVersionParts extends VersionParts {
  readonly log: KafkaEventLog;
  readonly store: ElasticsearchMemoryStore;
}

/**
 * Where a later version's data lives: topics and consumer groups under `<topicPrefix><version>.`, indices
 * under `<indexPrefix><version>-`. The keyring (one key per user), the registry, the tenant directory and
 * the ledger stay the deployment's.
 */
export function versionLocation(config: LightmemConfig, name: string): LightmemConfig {
  return {
    ...config,
    kafka: { ...config.kafka, topicPrefix: `${config.kafka.topicPrefix}${name}.` },
    elasticsearch: { ...config.elasticsearch, indexPrefix: `${config.elasticsearch.indexPrefix}${name}-` },
  };
}

/** The consumer group, on the first version's raw topic, that copies it into a later version. */
export function copyGroup(name: string): string {
  return `${name}.copy`;
}

export interface DistributedVersionsDeps extends Omit<
  VersionSetDeps<DistributedVersionParts>,
  'registry' | 'copied' | 'refreshMs' | 'closeInBackground'
> {
  readonly registry: ElasticsearchPipelineVersions;
  /** Deletes what the first version derived (its memories). */
  readonly dropFirst: () => Promise<void>;
  /** Deletes a later version's topics, consumer groups and indices (once no service runs it). */
  readonly deleteLater: (name: string) => Promise<void>;
  /** Every tenant with memories in a kept version (what a replay of every tenant `--since` carries over). */
  readonly tenants: () => Promise<string[]>;
  readonly clock: Clock;
}

/**
 * The pipeline versions of a distributed deployment (see VersionSet), and what each stage service does
 * with them: runs its stage for the first version while it serves reads and for every later version that
 * builds or serves; the compressor service also copies the raw log into each later version and marks the
 * versions that have caught up as built.
 */
export class DistributedVersions extends VersionSet<DistributedVersionParts> {
  constructor(private readonly distributed: DistributedVersionsDeps) {
    super({
      ...distributed,
      copied: (parts) => distributed.first.log.committedOffset(copyGroup(parts.version.name), Topics.raw),
      refreshMs: versionRefreshMs,
      closeInBackground: true,
    });
  }

  /**
   * Runs one stage of every version that runs now, until the signal aborts. When versions change (a replay
   * starts, reads switch, a version is dropped) the set is restarted: each stage resumes from its
   * committed offsets, so nothing is lost or done twice.
   */
  async runStage(name: StageName, signal: AbortSignal): Promise<void> {
    const { logger, clock, first } = this.distributed;
    // Marking versions built is the compressor service's, since it runs the copies.
    const scheduler = new InProcessScheduler(clock, logger);
    if (name === 'compressor') {
      scheduler.register({
        name: 'versions-built',
        intervalMs: first.config.pipeline.idleCheckMs,
        run: ({ now }) => this.markCaughtUp(now),
      });
      scheduler.start();
    }
    try {
      while (!signal.aborted) {
        let generation: number;
        let plan: Awaited<ReturnType<typeof this.running>>;
        try {
          generation = (await this.current(true)).generation;
          plan = await this.running();
        } catch (error) {
          // The registry unreachable, or a version's topics not ready yet: look again shortly.
          if (!isRetryable(error)) throw error;
          logger.warn('cannot open the pipeline versions; retrying', errorFields(error));
          await sleep(2_000, undefined, { signal }).catch(() => undefined);
          continue;
        }
        const changed = new AbortController();
        const both = AbortSignal.any([signal, changed.signal]);
        const runs = Promise.all([
          plan.first ? runStageOf(first, name, both, { clock, logger }) : Promise.resolve(),
          ...plan.later.map((parts) =>
            this.keepRunning(parts.version, both, (running) => this.runLater(parts, name, running)),
          ),
        ]);
        // Observed below; marked handled here so a failure after the grace below does not go unheard.
        runs.catch((error: unknown) => {
          if (!both.aborted) return;
          logger.warn('a pipeline version run failed while stopping', {
            stage: name,
            ...errorFields(error),
          });
        });
        try {
          // Until the versions change (runs that end before, e.g. none at all, wait for that too); a run
          // that fails ends it at once.
          const change = this.untilChanged(generation, both);
          await Promise.race([change, runs.then(() => change)]);
        } finally {
          changed.abort();
        }
        // The runs stop at the abort. One that does not within the grace (a client of a version whose
        // topics were deleted under it, retrying) is left to end by itself: the next set must start.
        const grace = new AbortController();
        const stopped = await Promise.race([
          runs.then(() => true),
          sleep(stopGraceMs, false, { signal: grace.signal }).catch(() => false),
        ]).finally(() => grace.abort());
        if (!stopped) {
          logger.warn('a pipeline version run did not stop after the versions changed; going on without it', {
            stage: name,
            graceMs: stopGraceMs,
          });
        }
      }
    } finally {
      await scheduler.stop();
    }
  }

  /** Deletes a dropped version's data: the first one's memories, or a later one's topics and indices. */
  async deleteData(name: string): Promise<void> {
    if (name === versionName(1)) {
      await this.distributed.dropFirst();
      return;
    }
    await this.closeDropped((await this.current(true)).versions);
    await this.distributed.deleteLater(name);
  }

  /** A later version's stage; the compressor's also copies the raw log into it. */
  private async runLater(
    parts: DistributedVersionParts,
    name: StageName,
    signal: AbortSignal,
  ): Promise<void> {
    const { clock, logger, first } = this.distributed;
    const log = logger.child({ version: parts.version.name });
    await together(signal, [
      (both) => runStageOf(parts, name, both, { clock, logger: log }),
      ...(name === 'compressor'
        ? [
            (both: AbortSignal) =>
              followRawLog(
                {
                  source: first.log,
                  target: parts.log,
                  version: parts.version,
                  group: copyGroup(parts.version.name),
                  batchSize: parts.config.pipeline.batchSize,
                  scan: (visit) => first.log.scan(Topics.raw, visit),
                  ...this.copyHooks(parts, () => this.distributed.tenants(), both),
                },
                both,
              ),
          ]
        : []),
    ]);
  }

  /**
   * Resolves once the registry's generation is no longer `generation` (or the signal aborts). It reads the
   * generation only: refreshing the snapshot here would close a dropped version's log under its running
   * consumers, and closing waits for them, which wait for the abort this resolution triggers.
   */
  private async untilChanged(generation: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(versionCheckMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      try {
        if ((await this.distributed.registry.generation()) !== generation) return;
      } catch (error) {
        // The registry unreachable for a moment: the stages go on with what they run.
        this.distributed.logger.warn('cannot read the pipeline versions; retrying', {
          ...errorFields(error),
        });
      }
    }
  }
}

/**
 * Runs one stage of a version until the signal aborts (SIGTERM: the batch in hand is finished and
 * committed, then the consumer leaves its group), with the stage's scheduled work: the segmenter's idle
 * flushes, the summarizer's nudges (its state is read where it runs).
 */
export async function runStageOf(
  parts: FirstParts<DistributedVersionParts>,
  name: StageName,
  signal: AbortSignal,
  options: { clock: Clock; logger: Logger },
): Promise<void> {
  const stage = parts.stages.find((s) => s.name === name);
  if (stage === undefined) throw new LightmemError('invalid_input', `no stage ${name}`, { field: 'stage' });
  const { config, log } = parts;
  const scheduler = new InProcessScheduler(options.clock, options.logger);
  if (name === 'segmenter') {
    scheduler.register(
      idleFlushJob(log, { idleMs: config.pipeline.idleFlushMs, intervalMs: config.pipeline.idleCheckMs }),
    );
  }
  if (name === 'summarizer') {
    scheduler.register(
      summarizerNudgeJob(log, {
        intervalMs: config.pipeline.idleCheckMs,
        idleBufferMs: config.summarizer.flushAtSessionEnd ? null : config.pipeline.idleFlushMs,
      }),
    );
  }
  scheduler.start();
  try {
    await superviseStage(log, stage, { signal, logger: options.logger });
  } finally {
    await scheduler.stop();
  }
}

/** How long a stage service waits for the runs of the previous set of versions to stop. */
const stopGraceMs = 30_000;
/** How often a stage service looks for version changes (a new replay, a switch, a drop). */
const versionCheckMs = 1_000;
/** How old the routes an API replica reads by may be (a switch reaches every replica within this). */
const versionRefreshMs = 500;
