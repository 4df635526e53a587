import { LightmemError } from '../core/errors.js';
import type { Clock } from '../core/ports/clock.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import {
  derives,
  versionName,
  type PipelineVersion,
  type PipelineVersions,
  type ReadRoutes,
} from '../core/ports/pipeline-versions.js';
import { diffVersions, type VersionDiff } from './version-diff.js';

/** What a replay's caller sees of a version. */
export interface ReplayStatus {
  readonly version: string;
  /** The tenants it derives; null: every tenant. */
  readonly tenants: readonly string[] | null;
  readonly createdAt: string;
  /** When it caught up with the raw log (null: still building). */
  readonly builtAt: string | null;
  readonly droppedAt: string | null;
  /** Re-derives only sessions active since then (ISO 8601); null: everything. */
  readonly since: string | null;
  /** Tenants whose reads it serves (`*`: every tenant without a route of its own). */
  readonly serves: readonly string[];
  /** Raw-log records looked at so far, of `rawRecords`. */
  readonly copied: number;
  readonly rawRecords: number;
  /** Records its stages have still to process (0 once caught up). */
  readonly pending: number;
}

/** A version's progress, as the runtime measures it. */
export interface VersionProgress {
  readonly copied: number;
  readonly rawRecords: number;
  readonly pending: number;
}

export interface ReplaysDeps {
  readonly versions: PipelineVersions;
  /** Progress of a version (copy and stages); null for one not running or dropped. */
  readonly progress: (version: PipelineVersion) => Promise<VersionProgress | null>;
  /** The store of a kept version. */
  readonly storeOf: (name: string) => Promise<MemoryStore>;
  /** Deletes a dropped version's data. */
  readonly deleteData: (name: string) => Promise<void>;
  /** The raw log's end now (where a replay `--since` stops filtering by time). */
  readonly rawEnd: () => Promise<number>;
  /** Tenants that have events in the raw log (what a replay of every tenant compares). */
  readonly tenants: () => Promise<string[]>;
  /** The configuration a new version derives with (this process's, JSON). */
  readonly configJson: string;
  readonly clock: Clock;
}

/**
 * Replay: re-deriving memories from the raw log into a new pipeline version with the current
 * configuration, comparing it with the version that serves reads, switching reads to it, dropping the
 * old one. Tenant-blind: the caller (the memory service) decides which tenants a request may touch.
 */
export class Replays {
  constructor(private readonly deps: ReplaysDeps) {}

  /**
   * Starts a replay of these tenants (null: every tenant), or resumes the one that is building for the
   * same tenants with the same configuration (a replay interrupted by a crash goes on where it stopped).
   */
  async start(tenants: readonly string[] | null, since: number | null = null): Promise<ReplayStatus> {
    const wanted = tenants === null ? null : [...new Set(tenants)].sort();
    const building = (await this.deps.versions.list()).find(
      (v) =>
        v.number > 1 &&
        v.builtAt === null &&
        v.droppedAt === null &&
        v.config === this.deps.configJson &&
        v.since === since &&
        JSON.stringify(v.tenants) === JSON.stringify(wanted),
    );
    const version =
      building ??
      (await this.deps.versions.create({
        tenants: wanted,
        config: this.deps.configJson,
        createdAt: this.deps.clock.now(),
        since: since === null ? null : { at: since, offset: await this.deps.rawEnd() },
      }));
    return this.statusOf(version, await this.deps.versions.routes());
  }

  /** Every kept version (and dropped ones, with `includeDropped`) that derives one of these tenants (null: any). */
  async list(tenant: string | null, includeDropped = false): Promise<ReplayStatus[]> {
    const routes = await this.deps.versions.routes();
    const versions = (await this.deps.versions.list()).filter(
      (v) => (includeDropped || v.droppedAt === null) && (tenant === null || derives(v, tenant)),
    );
    return Promise.all(versions.map((v) => this.statusOf(v, routes, tenant)));
  }

  async status(name: string, tenant: string | null): Promise<ReplayStatus> {
    const version = await this.visible(name, tenant);
    return this.statusOf(version, await this.deps.versions.routes(), tenant);
  }

  /**
   * Compares a version with the one serving reads now (or `against`), over these tenants (null: those the
   * version derives, every tenant with events when it derives all).
   */
  async diff(
    name: string,
    options: { tenant: string | null; against?: string | undefined },
  ): Promise<VersionDiff> {
    const version = await this.visible(name, options.tenant);
    const routes = await this.deps.versions.routes();
    const tenants =
      options.tenant !== null ? [options.tenant] : (version.tenants ?? (await this.deps.tenants()));
    const against = options.against ?? this.servingOf(routes, tenants, name);
    await this.visible(against, options.tenant);
    return diffVersions({
      from: { name: against, store: await this.deps.storeOf(against) },
      to: { name, store: await this.deps.storeOf(name) },
      tenants,
    });
  }

  /** Routes reads of these tenants (null: every tenant) to a built version, atomically. */
  async switchTo(name: string, tenants: readonly string[] | null): Promise<ReplayStatus> {
    // One tenant switching sees the version as that tenant does.
    const tenant = tenants?.length === 1 ? (tenants[0] ?? null) : null;
    const version = await this.visible(name, tenant);
    const routes = await this.deps.versions.switchTo(name, tenants ?? version.tenants);
    return this.statusOf(version, routes, tenant);
  }

  /** Drops a version that serves no reads: marks it dropped and deletes its data. */
  async drop(name: string): Promise<ReplayStatus> {
    const dropped = await this.deps.versions.drop(name, this.deps.clock.now());
    await this.deps.deleteData(name);
    return this.statusOf(dropped, await this.deps.versions.routes());
  }

  /** The version, when it exists and (for a tenant's caller) derives that tenant. */
  async visible(name: string, tenant: string | null): Promise<PipelineVersion> {
    const version = await this.deps.versions.get(name);
    if (version === undefined || (tenant !== null && !derives(version, tenant))) {
      throw new LightmemError('not_found', `no pipeline version ${JSON.stringify(name)}`, {
        field: 'version',
      });
    }
    return version;
  }

  /** The version that serves the tenants' reads (the first tenant's, when they differ), other than `name`. */
  private servingOf(routes: ReadRoutes, tenants: readonly string[], name: string): string {
    const first = tenants[0];
    const serving = first === undefined ? routes.all : (routes.tenants[first] ?? routes.all);
    return serving === name ? versionName(1) : serving;
  }

  private async statusOf(
    version: PipelineVersion,
    routes: ReadRoutes,
    tenant: string | null = null,
  ): Promise<ReplayStatus> {
    const progress = version.droppedAt === null ? await this.deps.progress(version) : null;
    const routed = Object.entries(routes.tenants)
      .filter(([t, v]) => v === version.name && (tenant === null || t === tenant))
      .map(([t]) => t);
    const servesAll =
      routes.all === version.name && (tenant === null || routes.tenants[tenant] === undefined);
    return {
      version: version.name,
      tenants: tenant !== null && version.tenants === null ? null : version.tenants,
      createdAt: iso(version.createdAt),
      since: version.since === null ? null : iso(version.since),
      builtAt: version.builtAt === null ? null : iso(version.builtAt),
      droppedAt: version.droppedAt === null ? null : iso(version.droppedAt),
      serves: servesAll ? [tenant ?? '*', ...routed] : routed,
      copied: progress?.copied ?? version.copied,
      rawRecords: progress?.rawRecords ?? 0,
      pending: progress?.pending ?? 0,
    };
  }
}

function iso(at: number): string {
  return new Date(at).toISOString();
}
