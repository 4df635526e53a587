import { z } from 'zod';
import type { MemoryService } from '../app/memory-service.js';
import {
  ConsolidateRequest,
  ConsolidationSummarySchema,
  ErasureReceiptSchema,
  ErrorResponse,
  EventsQuery,
  EventsRequest,
  HealthResponse,
  HistoryResponse,
  IngestResponse,
  ListQuery,
  MemoryListResponse,
  MemoryPath,
  MemoryQuery,
  MemoryViewSchema,
  SearchRequest,
  SearchResponse,
  UsageQuery,
  UsageResponse,
  UserMemoryPath,
  UserPath,
  DiffQuery,
  ReplayListResponse,
  ReplayRequest,
  ReplayStatusSchema,
  VersionDiffSchema,
  VersionPath,
} from '../app/api-schemas.js';

import type { Caller } from '../app/caller.js';
import { LightmemError } from '../core/errors.js';
import { route, type ApiRoute, type ResponseSpec } from './api-route.js';

/** Every route of the HTTP API: the router registers them and the OpenAPI document describes them. */
export function apiRoutes(service: MemoryService): ApiRoute[] {
  const health = async () => {
    const answer = await service.health();
    return {
      status: answer.ready ? 200 : 503,
      body: { status: answer.ready ? 'ok' : 'unavailable', ...answer },
    };
  };
  const healthResponses = {
    200: { description: 'Every stage of the pipeline runs', schema: HealthResponse },
    503: {
      description: 'The pipeline does not run, or a stage failed (with the reasons)',
      schema: HealthResponse,
    },
  };
  return [
    route({
      method: 'POST',
      url: '/v1/events',
      operationId: 'ingestEvents',
      summary: 'Append conversation turns',
      description:
        'Turns are appended to the log (idempotent per tenant, user, conversation and turn id) and become memories as the pipeline processes them. Items that are not valid are reported in `rejected` and dead-lettered; the others are accepted. With `?wait=true` the answer comes once they are searchable (`processed`) or after 30 s.',
      tag: 'memories',
      scope: 'write',
      query: EventsQuery,
      body: EventsRequest,
      responses: { 202: { description: 'Accepted', schema: IngestResponse } },
      handle: async ({ caller, query, body, traceContext }) => ({
        status: 202,
        body: await service.ingest(caller, { ...body, wait: query.wait, traceContext }),
      }),
    }),
    route({
      method: 'POST',
      url: '/v1/search',
      operationId: 'searchMemories',
      summary: "Search a user's memories",
      description:
        'Hybrid (BM25 + kNN) search within one user of the key’s tenant: current versions by default, the versions valid at `asOf`, or every version with `includeSuperseded`.',
      tag: 'memories',
      scope: 'read',
      body: SearchRequest,
      responses: { 200: { description: 'Ranked memories with provenance', schema: SearchResponse } },
      handle: async ({ caller, body }) => ({
        status: 200,
        body: { results: await service.search(caller, body) },
      }),
    }),
    route({
      method: 'GET',
      url: '/v1/users/:userId/memories',
      operationId: 'listMemories',
      summary: "List a user's memories",
      tag: 'memories',
      scope: 'read',
      params: UserPath,
      query: ListQuery,
      responses: { 200: { description: 'A page of memories', schema: MemoryListResponse } },
      handle: async ({ caller, params, query }) => ({
        status: 200,
        body: await service.list(caller, { ...query, userId: params.userId }),
      }),
    }),
    ...memoryReads('', {
      operation: 'Memory',
      summary: 'One memory of a user, with its provenance',
      response: { description: 'The memory', schema: MemoryViewSchema },
      read: (caller, request) => service.get(caller, request),
    }),
    ...memoryReads('/history', {
      operation: 'MemoryHistory',
      summary: 'The versions of a memory and the decisions that made them',
      response: { description: 'Versions, oldest first', schema: HistoryResponse },
      read: (caller, request) => service.history(caller, request),
    }),
    route({
      method: 'DELETE',
      url: '/v1/users/:userId',
      operationId: 'eraseUser',
      summary: 'Erase a user everywhere',
      description:
        "Removes every version of every memory of the user, its log records, stage state and pending consolidation, and leaves a tombstone so that no replay brings it back. On Kafka (distributed mode) the records are crypto-shredded: the user's keys are destroyed and the receipt counts them (`event-log:user-keys`). Needs the admin scope. Erasing again answers a receipt with nothing removed.",
      tag: 'users',
      scope: 'admin',
      params: UserPath,
      responses: { 200: { description: 'The receipt', schema: ErasureReceiptSchema } },
      handle: async ({ caller, params }) => ({ status: 200, body: await service.eraseUser(caller, params) }),
    }),
    route({
      method: 'POST',
      url: '/v1/users/:userId/consolidate',
      operationId: 'consolidateUser',
      summary: "Consolidate a user's new memories now",
      description:
        'Runs sleep-time consolidation of the user now instead of at its scheduled time: each new memory is checked against the similar older ones, and updates, supersessions and merges become new versions (the old ones stay in the history). With `dryRun` the decisions are made and reported but nothing changes. Needs the write scope.',
      tag: 'users',
      scope: 'write',
      params: UserPath,
      body: ConsolidateRequest.default({ dryRun: false }),
      responses: { 200: { description: 'The decisions', schema: ConsolidationSummarySchema } },
      handle: async ({ caller, params, body, signal }) => ({
        status: 200,
        body: await service.consolidate(caller, { userId: params.userId, dryRun: body.dryRun, signal }),
      }),
    }),
    ...replayRoutes(service),
    route({
      method: 'GET',
      url: '/v1/usage',
      operationId: 'usage',
      summary: "The tenant's LLM calls and tokens",
      tag: 'operations',
      scope: 'read',
      query: UsageQuery,
      responses: { 200: { description: 'Totals per model', schema: UsageResponse } },
      handle: async ({ caller, query }) => ({ status: 200, body: await service.usage(caller, query) }),
    }),
    // One readiness answer at two addresses: the first API's /healthz and the Kubernetes-style /readyz.
    ...(['health', 'readiness'] as const).map((operationId) =>
      route({
        method: 'GET',
        url: operationId === 'health' ? '/healthz' : '/readyz',
        operationId,
        summary: 'Readiness of the pipeline (no key needed)',
        tag: 'operations',
        scope: null,
        responses: healthResponses,
        handle: health,
      }),
    ),
    route({
      method: 'GET',
      url: '/livez',
      operationId: 'liveness',
      summary: 'The process answers (no key needed)',
      tag: 'operations',
      scope: null,
      responses: { 200: { description: 'Alive', schema: z.object({ status: z.literal('ok') }) } },
      handle: async () => ({ status: 200, body: { status: 'ok' } }),
    }),
  ];
}

/**
 * A read of one memory under its user, at two addresses: `/v1/users/:userId/memories/:id<suffix>` and the
 * first API's `/v1/memories/:id<suffix>?userId=` (the user is required there too).
 */
function memoryReads(
  suffix: string,
  spec: {
    operation: string;
    summary: string;
    response: ResponseSpec;
    read: (
      caller: Caller,
      request: { userId: string; id: string; tenantId?: string | undefined },
    ) => Promise<unknown>;
  },
): ApiRoute[] {
  return [
    route({
      method: 'GET',
      url: `/v1/users/:userId/memories/:id${suffix}`,
      operationId: `getUser${spec.operation}`,
      summary: spec.summary,
      tag: 'memories',
      scope: 'read',
      params: UserMemoryPath,
      responses: { 200: spec.response },
      handle: async ({ caller, params }) => ({ status: 200, body: await spec.read(caller, params) }),
    }),
    route({
      method: 'GET',
      url: `/v1/memories/:id${suffix}`,
      operationId: `get${spec.operation}`,
      summary: `${spec.summary} (the user is required)`,
      tag: 'memories',
      scope: 'read',
      params: MemoryPath,
      query: MemoryQuery,
      responses: { 200: spec.response },
      handle: async ({ caller, params, query }) => ({
        status: 200,
        body: await spec.read(caller, { ...query, id: params.id }),
      }),
    }),
  ];
}

/** Replay: new pipeline versions of the key's tenant, their progress, diff, switch and drop. */
function replayRoutes(service: MemoryService): ApiRoute[] {
  const status = { description: 'The version', schema: ReplayStatusSchema };
  const conflict = (description: string) => ({ description, schema: ErrorResponse });
  /**
   * The version, unless it was dropped: a dropped version is gone for the API (404), as it is gone from the
   * list, though its record stays for the operator (`lightmem replay`).
   */
  const kept = async (caller: Caller, version: string, field: string) => {
    const found = await service.replay(caller, { version });
    if (found.droppedAt !== null) {
      throw new LightmemError('not_found', `pipeline version ${version} was dropped at ${found.droppedAt}`, {
        field,
      });
    }
    return found;
  };
  return [
    route({
      method: 'POST',
      url: '/v1/replays',
      operationId: 'startReplay',
      summary: "Re-derive the tenant's memories into a new pipeline version",
      description:
        "Starts re-deriving the key's tenant's memories from the raw log with the server's current configuration into a new version beside the one serving reads (or resumes the one building with the same configuration). It builds in the background: poll it until `builtAt` is set, compare it (`/diff`), switch reads to it, drop the old one. Erased users never come back. Needs the admin scope.",
      tag: 'replay',
      scope: 'admin',
      body: ReplayRequest,
      responses: { 202: { description: 'Building', schema: ReplayStatusSchema } },
      handle: async ({ caller, body }) => ({
        status: 202,
        body: await service.startReplay(caller, {
          tenants: body.tenantId === undefined ? null : [body.tenantId],
          since: body.since,
        }),
      }),
    }),
    route({
      method: 'GET',
      url: '/v1/replays',
      operationId: 'listReplays',
      summary: "The pipeline versions of the key's tenant",
      tag: 'replay',
      scope: 'read',
      responses: {
        200: { description: 'Versions, oldest first', schema: ReplayListResponse },
      },
      handle: async ({ caller }) => ({ status: 200, body: { versions: await service.replays(caller) } }),
    }),
    route({
      method: 'GET',
      url: '/v1/replays/:version',
      operationId: 'getReplay',
      summary: 'A pipeline version and its progress',
      description: 'A dropped version is gone: 404, as it is gone from the list.',
      tag: 'replay',
      scope: 'read',
      params: VersionPath,
      responses: { 200: status },
      handle: async ({ caller, params }) => ({
        status: 200,
        body: await kept(caller, params.version, 'version'),
      }),
    }),
    route({
      method: 'GET',
      url: '/v1/replays/:version/diff',
      operationId: 'diffReplay',
      summary: 'Memories a version adds, removes and changes',
      description:
        "Compares the version with the one serving the tenant's reads (or `against`), matching memories by the turns they cite. A dropped version (either) is gone: 404.",
      tag: 'replay',
      scope: 'read',
      params: VersionPath,
      query: DiffQuery,
      responses: { 200: { description: 'The comparison', schema: VersionDiffSchema } },
      handle: async ({ caller, params, query }) => {
        await kept(caller, params.version, 'version');
        if (query.against !== undefined) await kept(caller, query.against, 'against');
        return {
          status: 200,
          body: await service.diffReplay(caller, { ...params, against: query.against }),
        };
      },
    }),
    route({
      method: 'POST',
      url: '/v1/replays/:version/switch',
      operationId: 'switchReplay',
      summary: "Route the tenant's reads to a built version, atomically",
      tag: 'replay',
      scope: 'admin',
      params: VersionPath,
      responses: {
        200: status,
        409: conflict('The version is still building (retryable) or was dropped'),
      },
      handle: async ({ caller, params }) => ({
        status: 200,
        body: await service.switchReplay(caller, { version: params.version, tenants: null }),
      }),
    }),
    route({
      method: 'DELETE',
      url: '/v1/replays/:version',
      operationId: 'dropReplay',
      summary: 'Drop a version that serves no reads and delete its data',
      description:
        'Afterwards the version is gone: reading it answers 404 and it leaves the list. Dropping it again answers 200 (idempotent).',
      tag: 'replay',
      scope: 'admin',
      params: VersionPath,
      responses: {
        200: status,
        409: conflict('The version serves reads: switch them first'),
      },
      handle: async ({ caller, params }) => ({ status: 200, body: await service.dropReplay(caller, params) }),
    }),
  ];
}
