import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import { systemClock, type Clock } from '../../core/ports/clock.js';
import {
  derives,
  servesReads,
  versionName,
  type NewVersion,
  type PipelineVersion,
  type PipelineVersions,
  type ReadRoutes,
} from '../../core/ports/pipeline-versions.js';
import { elasticsearchClient, type ElasticsearchRegistryOptions } from './es-client.js';
import { esFailure, statusOf } from './es-errors.js';
import { ensureSmallIndex } from './es-indices.js';
import { getVersioned } from './es-mget.js';
import { indexNames, tenantHash, type AliasNames } from './es-mapping.js';

/** The registry's connection and index prefix: the registry is `<prefix>pipeline-versions` (alias of `…-v1`). */
export type ElasticsearchPipelineVersionsOptions = ElasticsearchRegistryOptions;

/** The registry: every version, the read routes and the generation counter. */
export interface Registry {
  readonly generation: number;
  /** Oldest first; numbers 1, 2, 3… */
  readonly versions: readonly PipelineVersion[];
  readonly routes: ReadRoutes;
}

/** What a transition makes of the registry (null: nothing changes, nothing is written) and answers. */
export interface Transition<T> {
  readonly next: Registry | null;
  readonly result: T;
}

/** The registry before anything happened: v1 (the data dir's own pipeline), built, serving every read. */
export function initialRegistry(now: number): Registry {
  // As the SQLite registry's first migration: created and built at the current second.
  const at = Math.floor(now / 1000) * 1000;
  const v1: PipelineVersion = {
    name: versionName(1),
    number: 1,
    tenants: null,
    config: null,
    createdAt: at,
    builtAt: at,
    droppedAt: null,
    since: null,
    sinceOffset: null,
    copied: 0,
  };
  return { generation: 1, versions: [v1], routes: { all: v1.name, tenants: {} } };
}

/** A version by name; not_found on field `version` for a name that is not one. */
export function existingVersion(registry: Registry, name: string): PipelineVersion {
  const number = numberOf(name);
  const version = number === null ? undefined : registry.versions.find((v) => v.number === number);
  if (version === undefined) {
    throw new LightmemError('not_found', `no pipeline version ${JSON.stringify(name)}`, {
      field: 'version',
    });
  }
  return version;
}

export function findVersion(registry: Registry, name: string): PipelineVersion | undefined {
  const number = numberOf(name);
  return number === null ? undefined : registry.versions.find((v) => v.number === number);
}

/** The next version, building, for the tenants de-duplicated and sorted. */
export function createTransition(registry: Registry, version: NewVersion): Transition<PipelineVersion> {
  checkTime(version.createdAt, 'createdAt');
  const since = version.since ?? null;
  if (since !== null) {
    checkTime(since.at, 'since.at');
    checkTime(since.offset, 'since.offset');
  }
  const number = Math.max(0, ...registry.versions.map((v) => v.number)) + 1;
  const created: PipelineVersion = {
    name: versionName(number),
    number,
    tenants: version.tenants === null ? null : [...new Set(version.tenants)].sort(),
    config: version.config,
    createdAt: version.createdAt,
    builtAt: null,
    droppedAt: null,
    since: since?.at ?? null,
    sinceOffset: since?.offset ?? null,
    copied: 0,
  };
  return { next: bumped(registry, [...registry.versions, created]), result: created };
}

/** The copy cursor moves forward only; the generation stays. */
export function advanceTransition(registry: Registry, name: string, copied: number): Transition<void> {
  const version = existingVersion(registry, name);
  checkTime(copied, 'copied');
  if (!(version.copied < copied)) return { next: null, result: undefined };
  const versions = replaced(registry, { ...version, copied });
  return { next: { ...registry, versions }, result: undefined };
}

/** The first built time stays; only the first marking bumps the generation. */
export function markBuiltTransition(registry: Registry, name: string, at: number): Transition<void> {
  const version = existingVersion(registry, name);
  checkTime(at, 'at');
  if (version.builtAt !== null) return { next: null, result: undefined };
  return { next: bumped(registry, replaced(registry, { ...version, builtAt: at })), result: undefined };
}

/**
 * Routes reads of `tenants` (null: every tenant, clearing the per-tenant routes) to a built, kept version
 * that derives them; all or nothing. A tenant switched to where every tenant goes loses its own route.
 */
export function switchTransition(
  registry: Registry,
  name: string,
  tenants: readonly string[] | null,
): Transition<ReadRoutes> {
  const version = existingVersion(registry, name);
  if (version.droppedAt !== null) {
    throw new LightmemError('conflict', `${name} was dropped: reads cannot be switched to it`);
  }
  if (version.builtAt === null) {
    throw new LightmemError(
      'conflict',
      `${name} has not caught up with the raw log yet: wait for its replay to finish (lightmem replay status)`,
      { retryable: true },
    );
  }
  let routes: ReadRoutes;
  if (tenants === null) {
    if (version.tenants !== null) {
      throw new LightmemError(
        'conflict',
        `${name} derives only tenants ${version.tenants.join(', ')}: switch those tenants, not every tenant`,
      );
    }
    routes = { all: version.name, tenants: {} };
  } else {
    for (const tenant of tenants) {
      if (!derives(version, tenant)) {
        throw new LightmemError('conflict', `${name} does not derive tenant ${tenant}`, {
          field: 'tenantId',
        });
      }
    }
    const routed = new Map(Object.entries(registry.routes.tenants));
    for (const tenant of tenants) {
      if (registry.routes.all === version.name) routed.delete(tenant);
      else routed.set(tenant, version.name);
    }
    routes = { all: registry.routes.all, tenants: Object.fromEntries(routed) };
  }
  return {
    next: { generation: registry.generation + 1, versions: registry.versions, routes },
    result: routes,
  };
}

/** Marks a version that serves no reads dropped; dropping it again keeps the first time. */
export function dropTransition(registry: Registry, name: string, at: number): Transition<PipelineVersion> {
  const version = existingVersion(registry, name);
  if (servesReads(registry.routes, version.name)) {
    throw new LightmemError(
      'conflict',
      `${name} serves reads: switch them to another version before dropping it`,
    );
  }
  if (version.droppedAt !== null) return { next: null, result: version };
  checkTime(at, 'at');
  const dropped = { ...version, droppedAt: at };
  return { next: bumped(registry, replaced(registry, dropped)), result: dropped };
}

function bumped(registry: Registry, versions: readonly PipelineVersion[]): Registry {
  return { generation: registry.generation + 1, versions, routes: registry.routes };
}

function replaced(registry: Registry, version: PipelineVersion): PipelineVersion[] {
  return registry.versions.map((v) => (v.number === version.number ? version : v));
}

function numberOf(name: string): number | null {
  const match = /^v([1-9][0-9]{0,8})$/.exec(name);
  return match?.[1] === undefined ? null : Number(match[1]);
}

/** Numbers go into a JSON document: NaN or Infinity would be written as null and make it unreadable. */
function checkTime(value: number, field: string): void {
  if (!Number.isFinite(value)) {
    throw new LightmemError('invalid_input', `${field} must be a finite number (got ${value})`, { field });
  }
}

// --- The stored document -------------------------------------------------------------------------------

/** The one document holding the registry. */
const DOC_ID = 'registry';
/** Concurrent read-modify-writes race on the document's version; each loser re-reads and tries again. */
const MAX_WRITE_ATTEMPTS = 16;

/** Versions and routes are read back whole, never searched: stored, not indexed. */
const mappings: estypes.MappingTypeMapping = {
  dynamic: 'strict',
  properties: {
    generation: { type: 'long' },
    versions: { type: 'object', enabled: false },
    routes: { type: 'object', enabled: false },
  },
};

const StoredVersion = z.object({
  number: z.number().int().positive(),
  tenants: z.array(z.string()).nullable(),
  config: z.string().nullable(),
  createdAt: z.number(),
  builtAt: z.number().nullable(),
  droppedAt: z.number().nullable(),
  since: z.number().nullable(),
  sinceOffset: z.number().nullable(),
  copied: z.number(),
});

const RegistryDoc = z
  .object({
    generation: z.number().int(),
    versions: z.array(StoredVersion).min(1),
    routes: z.object({
      all: z.number().int(),
      tenants: z.array(z.object({ tenant: z.string(), version: z.number().int() })),
    }),
  })
  .superRefine((doc, context) => {
    if (doc.versions.some((v, i) => v.number !== i + 1)) {
      context.addIssue({ code: 'custom', message: 'versions are not numbered 1, 2, 3…', path: ['versions'] });
    }
    const known = (number: number) => number >= 1 && number <= doc.versions.length;
    if (!known(doc.routes.all) || doc.routes.tenants.some((route) => !known(route.version))) {
      context.addIssue({ code: 'custom', message: 'a route names no version', path: ['routes'] });
    }
  });
type RegistryDoc = z.infer<typeof RegistryDoc>;

function toDoc(registry: Registry): RegistryDoc {
  return {
    generation: registry.generation,
    versions: registry.versions.map((v) => ({
      number: v.number,
      tenants: v.tenants === null ? null : [...v.tenants],
      config: v.config,
      createdAt: v.createdAt,
      builtAt: v.builtAt,
      droppedAt: v.droppedAt,
      since: v.since,
      sinceOffset: v.sinceOffset,
      copied: v.copied,
    })),
    routes: {
      all: numberOf(registry.routes.all) ?? 1,
      tenants: Object.entries(registry.routes.tenants).map(([tenant, name]) => ({
        tenant,
        version: numberOf(name) ?? 1,
      })),
    },
  };
}

function fromDoc(source: unknown): Registry {
  const parsed = RegistryDoc.safeParse(source);
  if (!parsed.success) {
    throw new LightmemError('storage_corrupt', 'pipeline versions registry document is unreadable', {
      cause: parsed.error,
    });
  }
  const doc = parsed.data;
  return {
    generation: doc.generation,
    versions: doc.versions.map((v) => ({ name: versionName(v.number), ...v })),
    routes: {
      all: versionName(doc.routes.all),
      tenants: Object.fromEntries(doc.routes.tenants.map((r) => [r.tenant, versionName(r.version)])),
    },
  };
}

interface Read {
  readonly registry: Registry;
  readonly seqNo: number;
  readonly primaryTerm: number;
}

/**
 * The registry of pipeline versions and read routes of distributed mode, shared by every replica: one
 * document in the small index `<prefix>pipeline-versions`. Reads are real-time GETs (they see every
 * acknowledged write without a refresh). Every change is a read-modify-write of the whole document,
 * written only over the version just read (`if_seq_no` + `if_primary_term`): a replica that lost the race
 * re-reads and applies its change again, so no update is lost and each transition (routes and generation
 * together) is one atomic write. The rules of every transition are the SQLite registry's.
 */
export class ElasticsearchPipelineVersions implements PipelineVersions {
  private constructor(
    private readonly client: Client,
    private readonly names: AliasNames,
    private readonly clock: Clock,
  ) {}

  /** Connects, makes sure the index and the registry document exist (idempotent, race-safe). */
  static async open(options: ElasticsearchPipelineVersionsOptions): Promise<ElasticsearchPipelineVersions> {
    indexNames(options.indexPrefix); // refuses a prefix that cannot name an index (config_invalid)
    const alias = `${options.indexPrefix}pipeline-versions`;
    const names: AliasNames = {
      alias,
      index: (version) => `${alias}-v${version}`,
      tenantAlias: (tenantId) => `${alias}-t-${tenantHash(tenantId)}`,
    };
    const client = elasticsearchClient({
      node: options.node,
      security: options.security,
      requestTimeoutMs: options.requestTimeoutMs,
    });
    const versions = new ElasticsearchPipelineVersions(client, names, options.clock ?? systemClock);
    try {
      await ensureSmallIndex(client, names, mappings);
      await versions.read();
    } catch (error) {
      await client.close();
      throw esFailure(error, 'opening the pipeline versions registry');
    }
    return versions;
  }

  async generation(): Promise<number> {
    return (await this.read()).registry.generation;
  }

  async list(): Promise<PipelineVersion[]> {
    return [...(await this.read()).registry.versions];
  }

  async get(name: string): Promise<PipelineVersion | undefined> {
    if (numberOf(name) === null) return undefined;
    return findVersion((await this.read()).registry, name);
  }

  async create(version: NewVersion): Promise<PipelineVersion> {
    return this.change('creating a pipeline version', (registry) => createTransition(registry, version));
  }

  async advance(name: string, copied: number): Promise<void> {
    return this.change(`advancing ${name}`, (registry) => advanceTransition(registry, name, copied));
  }

  async markBuilt(name: string, at: number): Promise<void> {
    return this.change(`marking ${name} built`, (registry) => markBuiltTransition(registry, name, at));
  }

  async routes(): Promise<ReadRoutes> {
    return (await this.read()).registry.routes;
  }

  async switchTo(name: string, tenants: readonly string[] | null): Promise<ReadRoutes> {
    return this.change(`switching reads to ${name}`, (registry) => switchTransition(registry, name, tenants));
  }

  async drop(name: string, at: number): Promise<PipelineVersion> {
    return this.change(`dropping ${name}`, (registry) => dropTransition(registry, name, at));
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** Applies a transition to the registry as it is now, written only over what was read. */
  private async change<T>(action: string, transition: (registry: Registry) => Transition<T>): Promise<T> {
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const read = await this.read();
      const { next, result } = transition(read.registry);
      if (next === null) return result;
      try {
        await this.client.index({
          index: this.names.alias,
          id: DOC_ID,
          document: toDoc(next),
          if_seq_no: read.seqNo,
          if_primary_term: read.primaryTerm,
        });
        return result;
      } catch (error) {
        if (statusOf(error) !== 409) throw esFailure(error, action);
      }
      // Another replica changed the registry in between: re-read, after a short random pause.
      await sleep(Math.floor(Math.random() * 5 * attempt));
    }
    throw new LightmemError('busy', `pipeline versions kept changing while ${action}; try again`, {
      retryable: true,
    });
  }

  /** The registry as it is now (real time), made with version 1 when it is not there yet. */
  private async read(): Promise<Read> {
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const found = await this.getDoc();
      if (found !== undefined) return found;
      try {
        await this.client.create({
          index: this.names.alias,
          id: DOC_ID,
          document: toDoc(initialRegistry(this.clock.now())),
        });
      } catch (error) {
        // 409: another replica made it first; its document is read next.
        if (statusOf(error) !== 409) throw esFailure(error, 'creating the pipeline versions registry');
      }
    }
    throw new LightmemError('busy', 'the pipeline versions registry could not be read; try again', {
      retryable: true,
    });
  }

  private async getDoc(): Promise<Read | undefined> {
    const doc = await getVersioned(
      this.client,
      this.names.alias,
      DOC_ID,
      'reading the pipeline versions registry',
    );
    return doc === undefined
      ? undefined
      : { registry: fromDoc(doc.source), seqNo: doc.seqNo, primaryTerm: doc.primaryTerm };
  }
}
