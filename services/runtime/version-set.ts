import { setTimeout as sleep } from 'node:timers/promises';
import type { LightmemConfig } from '../core/config.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { EventLog } from '../core/ports/event-log.js';
import type { Logger } from '../core/ports/logger.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import {
  routeOf,
  servesReads,
  versionName,
  type PipelineVersion,
  type PipelineVersions,
  type ReadRoutes,
} from '../core/ports/pipeline-versions.js';
import { errorFields } from '../core/errors.js';
import type { VersionProgress } from '../app/replays.js';
import { carryOverMemories } from '../app/memory-carry-over.js';
import type { MemoryEntry } from '../core/model/generated.js';
import type { Clock } from '../core/ports/clock.js';
import type { ReplayParts } from './runtime.js';
import { Topics } from '../core/model/topics.js';
import {
  isDrained,
  pipelineLag,
  type PipelineComponents,
  type StageDefinition,
  type StageLag,
} from './pipeline.js';

/** One pipeline version opened in this process: its log, store, components and stages. */
export interface VersionParts {
  readonly version: PipelineVersion;
  readonly config: LightmemConfig;
  readonly log: EventLog;
  readonly store: MemoryStore;
  readonly components: PipelineComponents;
  readonly stages: readonly StageDefinition[];
  close(): Promise<void>;
}

/** Version 1's parts: the deployment's own log, store and stages (never closed by the set). */
export type FirstParts<P extends VersionParts> = Omit<P, 'version' | 'close'>;

export interface VersionSetDeps<P extends VersionParts> {
  readonly registry: PipelineVersions;
  /** Version 1: the deployment's own log, store and stages. */
  readonly first: FirstParts<P>;
  /** Opens a later version's parts. */
  readonly open: (version: PipelineVersion) => Promise<P>;
  /** How many raw-log records a later version has taken in (its copy's cursor). */
  readonly copied: (parts: P) => Promise<number>;
  readonly logger: Logger;
  /** How often a process looks for changes made by other processes (switches, new versions). */
  readonly refreshMs?: number;
  /**
   * A refresh that finds a version dropped closes it without waiting (distributed: its clients may take
   * long to close once its topics are deleted under them; routing and the other versions must not wait).
   */
  readonly closeInBackground?: boolean;
}

export interface VersionSnapshot {
  readonly generation: number;
  readonly versions: readonly PipelineVersion[];
  readonly routes: ReadRoutes;
}

/** What runs now: the first version while it serves reads, and the later ones that build or serve. */
export interface RunPlan<P extends VersionParts> {
  readonly first: boolean;
  readonly later: P[];
  readonly routes: ReadRoutes;
}

/**
 * The pipeline versions of a deployment, as this process sees them, whichever mode stores them: which
 * store serves a tenant's reads (looked up per request, refreshed from the registry at most every
 * `refreshMs`), the versions the pipeline runs, their progress, and the parts of each version, opened once
 * and closed when it is dropped.
 */
export class VersionSet<P extends VersionParts> {
  private snapshot: VersionSnapshot | null = null;
  private checkedAt = 0;
  private readonly opened = new Map<string, Promise<P>>();

  constructor(protected readonly deps: VersionSetDeps<P>) {}

  get registry(): PipelineVersions {
    return this.deps.registry;
  }

  /** The registry as of now (at most `refreshMs` old; `fresh`: read now). */
  async current(fresh = false): Promise<VersionSnapshot> {
    const now = Date.now();
    if (!fresh && this.snapshot !== null && now - this.checkedAt < (this.deps.refreshMs ?? 250)) {
      return this.snapshot;
    }
    this.checkedAt = now;
    const generation = await this.deps.registry.generation();
    if (this.snapshot?.generation !== generation) {
      const [versions, routes] = await Promise.all([this.deps.registry.list(), this.deps.registry.routes()]);
      this.snapshot = { generation, versions, routes };
      await this.closeDropped(versions, this.deps.closeInBackground !== true);
    }
    return this.snapshot;
  }

  /** The parts of the version that serves the tenant's reads. */
  async servingOf(tenantId: string): Promise<FirstParts<P>> {
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
  async later(): Promise<P[]> {
    const { versions } = await this.current(true);
    return Promise.all(
      versions.filter((v) => v.number > 1 && v.droppedAt === null).map((v) => this.openParts(v)),
    );
  }

  /**
   * What the pipeline runs now: the first version while it serves reads, and every later version that is
   * building or serves reads (with the routes this was read from).
   */
  async running(): Promise<RunPlan<P>> {
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
  async servingLags({ later, routes }: Pick<RunPlan<P>, 'later' | 'routes'>): Promise<StageLag[]> {
    const lags: StageLag[] = [];
    for (const parts of later.filter((p) => servesReads(routes, p.version.name))) {
      lags.push(...(await this.lagsOf(parts)));
    }
    return lags;
  }

  /** A later version's progress: its copy of the raw log, then its stages (named `<version>/<stage>`). */
  async lagsOf(parts: P): Promise<StageLag[]> {
    const copy: StageLag = {
      stage: `${parts.version.name}/copy`,
      topic: Topics.raw,
      committed: await this.deps.copied(parts),
      end: await this.deps.first.log.endOffset(Topics.raw),
    };
    const stages = await pipelineLag(parts.log, parts.stages);
    return [copy, ...stages.map((lag) => ({ ...lag, stage: `${parts.version.name}/${lag.stage}` }))];
  }

  /** A version's progress: raw-log records it has taken in, of the raw log's, and what its stages still hold. */
  async progress(version: PipelineVersion): Promise<VersionProgress | null> {
    const { first } = this.deps;
    const rawRecords = await first.log.endOffset(Topics.raw);
    if (version.number === 1) {
      return {
        copied: rawRecords,
        rawRecords,
        pending: pendingOf(await pipelineLag(first.log, first.stages)),
      };
    }
    const parts = (await this.later()).find((p) => p.version.name === version.name);
    if (parts === undefined) return null;
    const [copy, ...stages] = await this.lagsOf(parts);
    return { copied: copy?.committed ?? 0, rawRecords, pending: pendingOf(stages) };
  }

  /** What replay needs of the versions, around the parts that are the mode's own. */
  replayParts(
    own: Pick<ReplayParts, 'firstStore' | 'deleteData' | 'tenants' | 'rawEnd'>,
    clock: Clock,
  ): ReplayParts {
    return {
      ...own,
      versions: this.registry,
      progress: (version) => this.progress(version),
      storeOf: (name) => this.storeOf(name),
      laterVersions: () => this.later(),
      markCaughtUp: () => this.markCaughtUp(clock.now()),
    };
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
   * What a later version's copy of the raw log calls: carrying memories over into it (a replay `--since`)
   * from the versions serving reads, and erasing from it a user whose erasure raced a copied batch.
   */
  protected copyHooks(
    parts: P,
    allTenants: () => Promise<readonly string[]> | readonly string[],
    signal: AbortSignal,
  ): {
    carryOver: (keep: (memory: MemoryEntry) => boolean) => Promise<number>;
    eraseCopied: (tenantId: string, userId: string, erasedAt: number) => Promise<void>;
  } {
    return {
      carryOver: async (keep) =>
        carryOverMemories({
          from: (tenantId) => this.storeFor(tenantId),
          to: parts.store,
          tenants: parts.version.tenants ?? (await allTenants()),
          keep,
          embedder: parts.components.embedder,
          signal,
        }),
      eraseCopied: async (tenantId, userId, erasedAt) => {
        await parts.log.eraseUser(tenantId, userId, erasedAt);
        await parts.store.erase({ tenantId, userId });
      },
    };
  }

  /**
   * Runs a later version's work until the signal aborts. A failure is logged and the work restarted after
   * a pause: it never stops the other versions. A version dropped while it ran (its data deleted under it)
   * ends its run quietly.
   */
  protected async keepRunning(
    version: PipelineVersion,
    signal: AbortSignal,
    work: (signal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    const { logger, registry } = this.deps;
    while (!signal.aborted) {
      try {
        await work(signal);
      } catch (error) {
        if (signal.aborted) return;
        const now = await registry.get(version.name).catch(() => undefined);
        if (now === undefined || now.droppedAt !== null) {
          logger.info('pipeline version dropped; its run ended', {
            version: version.name,
            ...errorFields(error),
          });
          return;
        }
        logger.error('pipeline version stopped; restarting it', {
          version: version.name,
          ...errorFields(error),
        });
        await sleep(restartPauseMs, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    const opened = [...this.opened.values()];
    this.opened.clear();
    for (const parts of opened) await (await parts).close();
    await this.deps.registry.close();
  }

  /** Closes here every dropped later version that is open (`wait` false: in the background). */
  protected async closeDropped(versions: readonly PipelineVersion[], wait = true): Promise<void> {
    for (const version of versions) {
      if (version.droppedAt === null || !this.opened.has(version.name)) continue;
      const opened = this.opened.get(version.name);
      this.opened.delete(version.name);
      const closing = (async () => {
        try {
          await (await opened)?.close();
        } catch (error) {
          this.deps.logger.warn('closing a dropped version failed', {
            version: version.name,
            ...errorFields(error),
          });
        }
      })();
      if (wait) await closing;
    }
  }

  private async partsOf(name: string, versions: readonly PipelineVersion[]): Promise<FirstParts<P>> {
    if (name === versionName(1)) return this.deps.first;
    const version = versions.find((v) => v.name === name);
    if (version === undefined || version.droppedAt !== null) return this.deps.first;
    return this.openParts(version);
  }

  private openParts(version: PipelineVersion): Promise<P> {
    let parts = this.opened.get(version.name);
    if (parts === undefined) {
      parts = this.deps.open(version);
      parts.catch(() => this.opened.delete(version.name));
      this.opened.set(version.name, parts);
    }
    return parts;
  }
}

/** Pause before a failed later version is started again. */
const restartPauseMs = 5_000;

/**
 * Runs tasks side by side until the signal aborts; the first to fail stops the others (their signal
 * aborts) and its error is thrown.
 */
export async function together(
  signal: AbortSignal,
  tasks: readonly ((signal: AbortSignal) => Promise<void>)[],
): Promise<void> {
  const stop = new AbortController();
  const both = AbortSignal.any([signal, stop.signal]);
  await Promise.all(
    tasks.map((task) =>
      task(both).catch((error: unknown) => {
        stop.abort();
        throw error;
      }),
    ),
  );
}

function pendingOf(lags: readonly StageLag[]): number {
  return lags.reduce((sum, lag) => sum + Math.max(0, lag.end - lag.committed), 0);
}
