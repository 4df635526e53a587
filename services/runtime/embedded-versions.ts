import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightmemConfig } from '../core/config.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { Logger } from '../core/ports/logger.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { ScheduledJob } from '../core/ports/scheduler.js';
import {
  routeOf,
  servesReads,
  versionName,
  type PipelineVersion,
  type ReadRoutes,
} from '../core/ports/pipeline-versions.js';
import { errorMessage } from '../core/errors.js';
import { Topics } from '../core/model/topics.js';
import type { SqliteEventLog } from '../adapters/sqlite/sqlite-event-log.js';
import type { SqlitePipelineVersions } from '../adapters/sqlite/sqlite-pipeline-versions.js';
import { copyRawLog } from '../app/raw-log-copy.js';
import { carryOverMemories } from '../app/memory-carry-over.js';
import { idleFlushJob } from '../../workflows/idle-flush.js';
import { summarizerNudgeJob } from '../../workflows/summarizer-nudges.js';
import type { InProcessConsolidation } from './in-process-consolidation.js';
import {
  isDrained,
  pipelineLag,
  runStages,
  type PipelineComponents,
  type StageDefinition,
  type StageLag,
} from './pipeline.js';

/** One pipeline version opened in this process: its log, store, components and stages. */
export interface VersionParts {
  readonly version: PipelineVersion;
  readonly config: LightmemConfig;
  readonly log: SqliteEventLog;
  readonly store: MemoryStore;
  readonly components: PipelineComponents;
  readonly stages: readonly StageDefinition[];
  readonly consolidation: InProcessConsolidation;
  close(): Promise<void>;
}

/** Where the files of a version other than the first live. */
export function versionDir(dataDir: string, name: string): string {
  return join(dataDir, 'versions', name);
}

export interface EmbeddedVersionsDeps {
  readonly registry: SqlitePipelineVersions;
  /** Version 1: the data dir's own log, store and stages. */
  readonly first: Omit<VersionParts, 'version' | 'close'>;
  /** Opens a later version's parts (files under `versionDir`). */
  readonly open: (version: PipelineVersion) => Promise<VersionParts>;
  /** Deletes what the first version derived (its store's memories, its topics and stage state). */
  readonly dropFirst: () => Promise<void>;
  readonly dataDir: string;
  readonly logger: Logger;
  /** How often a process looks for changes made by other processes (switches, new versions). */
  readonly refreshMs?: number;
}

interface Snapshot {
  readonly generation: number;
  readonly versions: readonly PipelineVersion[];
  readonly routes: ReadRoutes;
}

/**
 * The pipeline versions of an embedded data dir, as this process sees them: which store serves a tenant's
 * reads (looked up per request, refreshed from the registry at most every `refreshMs`), the versions the
 * pipeline owner runs, and the parts of each version, opened once and closed when it is dropped.
 */
export class EmbeddedVersions {
  private snapshot: Snapshot | null = null;
  private checkedAt = 0;
  private readonly opened = new Map<string, Promise<VersionParts>>();

  constructor(private readonly deps: EmbeddedVersionsDeps) {}

  get registry(): SqlitePipelineVersions {
    return this.deps.registry;
  }

  /** The registry as of now (at most `refreshMs` old; `fresh`: read now). */
  async current(fresh = false): Promise<Snapshot> {
    const now = Date.now();
    if (!fresh && this.snapshot !== null && now - this.checkedAt < (this.deps.refreshMs ?? 250)) {
      return this.snapshot;
    }
    this.checkedAt = now;
    const generation = await this.deps.registry.generation();
    if (this.snapshot?.generation !== generation) {
      const [versions, routes] = await Promise.all([this.deps.registry.list(), this.deps.registry.routes()]);
      this.snapshot = { generation, versions, routes };
      await this.closeDropped(versions);
    }
    return this.snapshot;
  }

  /** The parts of the version that serves the tenant's reads. */
  async servingOf(tenantId: string): Promise<Omit<VersionParts, 'version' | 'close'>> {
    const { routes, versions } = await this.current();
    return this.partsOf(routeOf(routes, tenantId), versions);
  }

  async storeFor(tenantId: string): Promise<MemoryStore> {
    return (await this.servingOf(tenantId)).store;
  }

  /** The store of the version that serves every tenant without a route of its own (operators' views). */
  async everyTenantStore(): Promise<MemoryStore> {
    const { routes, versions } = await this.current();
    return (await this.partsOf(routes.all, versions)).store;
  }

  async embedderFor(tenantId: string): Promise<Embedder | null> {
    return (await this.servingOf(tenantId)).components.embedder;
  }

  /** The store of a kept version (diffs). */
  async storeOf(name: string): Promise<MemoryStore> {
    const { versions } = await this.current(true);
    return (await this.partsOf(name, versions)).store;
  }

  /** Every kept version but the first, opened (erasure reaches each). */
  async later(): Promise<VersionParts[]> {
    const { versions } = await this.current(true);
    return Promise.all(
      versions.filter((v) => v.number > 1 && v.droppedAt === null).map((v) => this.openParts(v)),
    );
  }

  /**
   * What the pipeline owner runs now: the first version while it serves reads, and every later version
   * that is building or serves reads (with the routes this was read from).
   */
  async running(): Promise<{ first: boolean; later: VersionParts[]; routes: ReadRoutes }> {
    const { versions, routes } = await this.current(true);
    const first = versions.find((v) => v.number === 1);
    return {
      routes,
      first: first !== undefined && first.droppedAt === null && servesReads(routes, versionName(1)),
      later: await Promise.all(
        versions
          .filter(
            (v) =>
              v.number > 1 && v.droppedAt === null && (v.builtAt === null || servesReads(routes, v.name)),
          )
          .map((v) => this.openParts(v)),
      ),
    };
  }

  /** Lags of the later versions of a plan that serve reads (what a wait for processing must also wait for). */
  async servingLags({
    later,
    routes,
  }: {
    later: readonly VersionParts[];
    routes: ReadRoutes;
  }): Promise<StageLag[]> {
    const lags: StageLag[] = [];
    for (const parts of later.filter((p) => servesReads(routes, p.version.name))) {
      lags.push(...(await this.lagsOf(parts)));
    }
    return lags;
  }

  /** A later version's progress: its copy of the raw log, then its stages (named `<version>/<stage>`). */
  async lagsOf(parts: VersionParts): Promise<StageLag[]> {
    const version = await this.deps.registry.get(parts.version.name);
    const copy: StageLag = {
      stage: `${parts.version.name}/copy`,
      topic: Topics.raw,
      committed: version?.copied ?? 0,
      end: await this.deps.first.log.endOffset(Topics.raw),
    };
    const stages = await pipelineLag(parts.log, parts.stages);
    return [copy, ...stages.map((lag) => ({ ...lag, stage: `${parts.version.name}/${lag.stage}` }))];
  }

  /** Marks each building version that has caught up with the raw log (copy and stages) as built. */
  async markCaughtUp(at: number): Promise<void> {
    const { later } = await this.running();
    for (const parts of later) {
      if ((await this.deps.registry.get(parts.version.name))?.builtAt !== null) continue;
      if (isDrained(await this.lagsOf(parts))) await this.deps.registry.markBuilt(parts.version.name, at);
    }
  }

  /**
   * Runs a later version until the signal aborts: its copy of the raw log and its stages. A failure is
   * logged and the version restarted after a pause: it never stops the first version's pipeline.
   */
  async run(parts: VersionParts, signal: AbortSignal): Promise<void> {
    const { logger } = this.deps;
    while (!signal.aborted) {
      const stop = new AbortController();
      const both = AbortSignal.any([signal, stop.signal]);
      try {
        await Promise.all([
          copyRawLog(
            {
              source: this.deps.first.log,
              target: parts.log,
              versions: this.deps.registry,
              version: parts.version,
              batchSize: parts.config.pipeline.batchSize,
              carryOver: (keep) =>
                carryOverMemories({
                  from: (tenantId) => this.storeFor(tenantId),
                  to: parts.store,
                  tenants: parts.version.tenants ?? this.deps.first.log.tenants(),
                  keep,
                  embedder: parts.components.embedder,
                  signal: both,
                }),
              eraseCopied: async (tenantId, userId, erasedAt) => {
                await parts.log.eraseUser(tenantId, userId, erasedAt);
                await parts.store.erase({ tenantId, userId });
              },
            },
            both,
          ).catch((error: unknown) => {
            stop.abort();
            throw error;
          }),
          runStages(parts.log, parts.stages, { signal: both, logger }).catch((error: unknown) => {
            stop.abort();
            throw error;
          }),
        ]);
      } catch (error) {
        if (signal.aborted) return;
        // Dropped while it ran (its files closed under it): its run is over, nothing went wrong.
        const now = await this.deps.registry.get(parts.version.name).catch(() => undefined);
        if (now === undefined || now.droppedAt !== null) {
          logger.info('pipeline version dropped; its run ended', {
            version: parts.version.name,
            error: errorMessage(error),
          });
          return;
        }
        logger.error('pipeline version stopped; restarting it', {
          version: parts.version.name,
          error: errorMessage(error),
        });
        await sleep(5_000, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** The owner's scheduled work for the later versions it runs: idle flushes, summarizer nudges, consolidation. */
  jobs(options: { idleMs: number; intervalMs: number; consolidationMs: number | null }): ScheduledJob[] {
    const each =
      (work: (parts: VersionParts) => ScheduledJob | null): ScheduledJob['run'] =>
      async (context) => {
        const { later } = await this.running();
        for (const parts of later) await work(parts)?.run(context);
      };
    const jobs: ScheduledJob[] = [
      {
        name: 'versions-built',
        intervalMs: options.intervalMs,
        run: ({ now }) => this.markCaughtUp(now),
      },
      {
        name: 'versions-idle-flush',
        intervalMs: options.intervalMs,
        run: each((parts) =>
          idleFlushJob(parts.log, {
            idleMs: parts.config.pipeline.idleFlushMs,
            intervalMs: options.intervalMs,
          }),
        ),
      },
      {
        name: 'versions-summarizer-nudges',
        intervalMs: options.intervalMs,
        run: each((parts) =>
          summarizerNudgeJob(parts.log, {
            intervalMs: options.intervalMs,
            idleBufferMs: parts.config.summarizer.flushAtSessionEnd
              ? null
              : parts.config.pipeline.idleFlushMs,
          }),
        ),
      },
    ];
    const consolidationMs = options.consolidationMs;
    if (consolidationMs !== null) {
      jobs.push({
        name: 'versions-consolidation',
        intervalMs: consolidationMs,
        run: each((parts) =>
          parts.config.consolidation.enabled ? parts.consolidation.job(consolidationMs) : null,
        ),
      });
    }
    return jobs;
  }

  /**
   * Deletes a dropped version's data. Version 1's derived data goes at once (its files stay: they hold the
   * raw log). A later version's files are deleted by the process that runs the pipeline, once it has
   * stopped running that version (`purgeDropped`): deleting them under a running stage would break it.
   */
  async deleteFiles(name: string): Promise<void> {
    if (name === versionName(1)) await this.deps.dropFirst();
    else await this.closeDropped((await this.current(true)).versions);
  }

  /** Closes here and deletes the files of every dropped later version (the pipeline owner, between runs). */
  async purgeDropped(): Promise<void> {
    const { versions } = await this.current(true);
    await this.closeDropped(versions);
    for (const version of versions) {
      if (version.number === 1 || version.droppedAt === null) continue;
      await rm(versionDir(this.deps.dataDir, version.name), { recursive: true, force: true }).catch(
        (error: unknown) =>
          this.deps.logger.warn('deleting a dropped version failed; retrying later', {
            version: version.name,
            error: errorMessage(error),
          }),
      );
    }
  }

  async close(): Promise<void> {
    const opened = [...this.opened.values()];
    this.opened.clear();
    for (const parts of opened) await (await parts).close();
    await this.deps.registry.close();
  }

  private async partsOf(
    name: string,
    versions: readonly PipelineVersion[],
  ): Promise<Omit<VersionParts, 'version' | 'close'>> {
    if (name === versionName(1)) return this.deps.first;
    const version = versions.find((v) => v.name === name);
    if (version === undefined || version.droppedAt !== null) return this.deps.first;
    return this.openParts(version);
  }

  private openParts(version: PipelineVersion): Promise<VersionParts> {
    let parts = this.opened.get(version.name);
    if (parts === undefined) {
      parts = this.deps.open(version);
      parts.catch(() => this.opened.delete(version.name));
      this.opened.set(version.name, parts);
    }
    return parts;
  }

  private async closeDropped(versions: readonly PipelineVersion[]): Promise<void> {
    for (const version of versions) {
      if (version.droppedAt === null || !this.opened.has(version.name)) continue;
      const opened = this.opened.get(version.name);
      this.opened.delete(version.name);
      try {
        await (await opened)?.close();
      } catch (error) {
        this.deps.logger.warn('closing a dropped version failed', {
          version: version.name,
          error: errorMessage(error),
        });
      }
    }
  }
}
