/**
 * Pipeline versions: what replay builds and what reads are routed to.
 *
 * A version is one derivation of memories from the raw log: its own consumer groups, its own intermediate
 * topics and its own store, made with the configuration it was created with. Version 1 is the data dir's
 * first pipeline. A replay creates the next version, which re-derives memories from the raw log (for
 * every tenant, or for some) beside the one that serves reads; once it has caught up it can be compared
 * with it, and reads switched to it (for every tenant, or tenant by tenant); the old version stays until
 * it is dropped.
 */
export interface PipelineVersion {
  /** `v1`, `v2`…: `v` and the number. */
  readonly name: string;
  readonly number: number;
  /** The tenants it derives memories for; null: every tenant. */
  readonly tenants: readonly string[] | null;
  /** The configuration it derives with (JSON); null: the data dir's own (version 1). */
  readonly config: string | null;
  readonly createdAt: number;
  /** When it first caught up with the raw log (reads may be switched to it from then on); null: building. */
  readonly builtAt: number | null;
  /** When it was dropped (its data deleted); null: kept. */
  readonly droppedAt: number | null;
  /**
   * Re-derives only the sessions active at or after this instant (epoch ms; null: everything): the raw
   * records before `sinceOffset` of other sessions are not copied, their memories are carried over from
   * the version serving reads when it starts.
   */
  readonly since: number | null;
  /** The raw log's end when it was created: every record from there on is derived, whatever its time. */
  readonly sinceOffset: number | null;
  /** Raw-log records it has taken in so far (its copy cursor; version 1 reads the raw log itself: 0). */
  readonly copied: number;
}

/** Which version serves reads: one for every tenant, and tenants switched on their own. */
export interface ReadRoutes {
  readonly all: string;
  readonly tenants: Readonly<Record<string, string>>;
}

export interface NewVersion {
  readonly tenants: readonly string[] | null;
  readonly since?: { readonly at: number; readonly offset: number } | null | undefined;
  readonly config: string;
  readonly createdAt: number;
}

export interface PipelineVersions {
  /** Changes with every change of versions or routes (processes poll it and reload what changed). */
  generation(): Promise<number>;
  /** Every version, dropped ones included, oldest first. */
  list(): Promise<PipelineVersion[]>;
  get(name: string): Promise<PipelineVersion | undefined>;
  /** Creates the next version (building). */
  create(version: NewVersion): Promise<PipelineVersion>;
  /** Records how far a version's copy of the raw log got (never moves back). */
  advance(name: string, copied: number): Promise<void>;
  /** Marks a version built (idempotent: the first time stays). */
  markBuilt(name: string, at: number): Promise<void>;
  routes(): Promise<ReadRoutes>;
  /**
   * Routes reads to a built version, atomically: of these tenants, or (null) of every tenant (tenants
   * switched on their own follow). Refuses a version that is not built, is dropped, or does not derive
   * the tenants.
   */
  switchTo(name: string, tenants: readonly string[] | null): Promise<ReadRoutes>;
  /** Marks a version dropped. Refuses one that serves reads of any tenant. */
  drop(name: string, at: number): Promise<PipelineVersion>;
  close(): Promise<void>;
}

/** The version name of a number. */
export function versionName(number: number): string {
  return `v${number}`;
}

/** The version that serves a tenant's reads. */
export function routeOf(routes: ReadRoutes, tenantId: string): string {
  return routes.tenants[tenantId] ?? routes.all;
}

/** Whether a version derives a tenant's memories. */
export function derives(version: PipelineVersion, tenantId: string): boolean {
  return version.tenants === null || version.tenants.includes(tenantId);
}

/** Whether any tenant's reads are routed to the version. */
export function servesReads(routes: ReadRoutes, name: string): boolean {
  return routes.all === name || Object.values(routes.tenants).includes(name);
}
