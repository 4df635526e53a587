import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScheduledJob } from '../core/ports/scheduler.js';
import { versionName } from '../core/ports/pipeline-versions.js';
import { errorFields } from '../core/errors.js';
import type { SqliteEventLog } from '../adapters/sqlite/sqlite-event-log.js';
import type { SqlitePipelineVersions } from '../adapters/sqlite/sqlite-pipeline-versions.js';
import { copyRawLog } from '../app/raw-log-copy.js';
import { pruneConsumedRecords } from './log-pruning.js';
import { idleFlushJob } from '../../workflows/idle-flush.js';
import { summarizerNudgeJob } from '../../workflows/summarizer-nudges.js';
import type { InProcessConsolidation } from './in-process-consolidation.js';
import { runStages } from './pipeline.js';
import { VersionSet, together, type VersionParts, type VersionSetDeps } from './version-set.js';

/** One pipeline version opened in this process (embedded: SQLite files, in-process consolidation). */
export interface EmbeddedVersionParts extends VersionParts {
  readonly log: SqliteEventLog;
  readonly consolidation: InProcessConsolidation;
}

/** Where the files of a version other than the first live. */
export function versionDir(dataDir: string, name: string): string {
  return join(dataDir, 'versions', name);
}

export interface EmbeddedVersionsDeps extends Omit<
  VersionSetDeps<EmbeddedVersionParts>,
  'registry' | 'copied'
> {
  readonly registry: SqlitePipelineVersions;
  /** Deletes what the first version derived (its store's memories, its topics and stage state). */
  readonly dropFirst: () => Promise<void>;
  /** Where later versions keep their files (`versionDir`). */
  readonly dataDir: string;
}

/**
 * The pipeline versions of an embedded data dir (see VersionSet), and what the pipeline owner does with
 * them here: copies the raw log into each later version (its cursor in the registry), runs its stages and
 * scheduled jobs, deletes a dropped version's files once it no longer runs.
 */
export class EmbeddedVersions extends VersionSet<EmbeddedVersionParts> {
  constructor(private readonly embedded: EmbeddedVersionsDeps) {
    super({
      ...embedded,
      copied: async (parts) => (await embedded.registry.get(parts.version.name))?.copied ?? 0,
    });
  }

  override get registry(): SqlitePipelineVersions {
    return this.embedded.registry;
  }

  /**
   * Runs a later version until the signal aborts: its copy of the raw log and its stages. A failure is
   * logged and the version restarted after a pause: it never stops the first version's pipeline.
   */
  async run(parts: EmbeddedVersionParts, signal: AbortSignal): Promise<void> {
    const { logger, first, registry } = this.embedded;
    await this.keepRunning(parts.version, signal, (running) =>
      together(running, [
        (both) =>
          copyRawLog(
            {
              source: first.log,
              target: parts.log,
              versions: registry,
              version: parts.version,
              batchSize: parts.config.pipeline.batchSize,
              ...this.copyHooks(parts, () => first.log.tenants(), both),
            },
            both,
          ),
        (both) => runStages(parts.log, parts.stages, { signal: both, logger }),
      ]),
    );
  }

  /** The owner's scheduled work for the later versions it runs: idle flushes, summarizer nudges, log pruning, consolidation. */
  jobs(options: {
    idleMs: number;
    intervalMs: number;
    consolidationMs: number | null;
    /** How often their logs drop consumed intermediate records (`sqlite.pruneConsumedMs`); null: never. */
    pruneMs: number | null;
  }): ScheduledJob[] {
    const each =
      (work: (parts: EmbeddedVersionParts) => ScheduledJob | null): ScheduledJob['run'] =>
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
    const pruneMs = options.pruneMs;
    if (pruneMs !== null) {
      // Every later version, also one built and not serving yet: its stages have consumed what it holds.
      jobs.push({
        name: 'versions-log-pruning',
        intervalMs: pruneMs,
        run: async ({ signal }) => {
          for (const parts of await this.later())
            await pruneConsumedRecords(parts.log, parts.stages, this.embedded.logger, signal);
        },
      });
    }
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
    if (name === versionName(1)) await this.embedded.dropFirst();
    else await this.closeDropped((await this.current(true)).versions);
  }

  /** Closes here and deletes the files of every dropped later version (the pipeline owner, between runs). */
  async purgeDropped(): Promise<void> {
    const { versions } = await this.current(true);
    await this.closeDropped(versions);
    for (const version of versions) {
      if (version.number === 1 || version.droppedAt === null) continue;
      await rm(versionDir(this.embedded.dataDir, version.name), { recursive: true, force: true }).catch(
        (error: unknown) =>
          this.embedded.logger.warn('deleting a dropped version failed; retrying later', {
            version: version.name,
            ...errorFields(error),
          }),
      );
    }
  }
}
