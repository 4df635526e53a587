import type { LightmemConfig } from '../../core/config.js';
import type { ConsolidationScope } from '../../../workflows/consolidation/activity-types.js';
import type { ConsolidationEntityInput } from '../../../workflows/consolidation/consolidation.workflow.js';

/** Where the Temporal server is, and the task queue of the consolidation workers (config `temporal`). */
export interface TemporalEndpoint {
  readonly address: string;
  readonly namespace: string;
  readonly taskQueue: string;
  /** TLS and an API key towards the frontend (config `temporal.tls`, `temporal.apiKey`). */
  readonly security?: TemporalSecurity | undefined;
}

export interface TemporalSecurity {
  readonly tls?:
    | {
        readonly ca?: string | undefined;
        readonly cert?: string | undefined;
        readonly key?: string | undefined;
        readonly serverName?: string | undefined;
      }
    | undefined;
  readonly apiKey?: string | undefined;
}

/** The entity workflow's settings, without the user it is about. */
export type EntitySettings = Omit<
  ConsolidationEntityInput,
  'tenantId' | 'userId' | 'pending' | 'pendingSince'
>;

export function temporalEndpoint(config: LightmemConfig): TemporalEndpoint {
  const { address, namespace, taskQueue, tls, apiKey } = config.temporal;
  return { address, namespace, taskQueue, security: { tls, apiKey } };
}

/** The entity workflow's settings from config `consolidation`. */
export function entitySettings(config: LightmemConfig): EntitySettings {
  const c = config.consolidation;
  return {
    minNewEntries: c.minNewEntries,
    maxWaitMs: c.maxWaitMs,
    chunkSize: c.chunkSize,
    parallelism: c.parallelism,
    continueAsNewAfterRuns: c.continueAsNewAfterRuns,
  };
}

/** The input a user's entity workflow is started with. */
export function consolidationEntityInput(
  settings: EntitySettings,
  scope: ConsolidationScope,
): ConsolidationEntityInput {
  return {
    ...settings,
    tenantId: scope.tenantId,
    userId: scope.userId,
    ...(isLaterVersion(scope.version) ? { version: scope.version } : {}),
  };
}

/**
 * One part of a workflow id: scope ids may hold `:`, so `%` and `:` are percent-encoded (tenant `a:b` with
 * user `c` and tenant `a` with user `b:c` must not share a workflow). Ids without them are kept as they are.
 */
export function idPart(value: string): string {
  return value.replaceAll('%', '%25').replaceAll(':', '%3A');
}

/**
 * The id of a user's entity workflow, `consolidate:<tenant>:<user>`: one per (tenant, user); a later
 * pipeline version's has its own, `consolidate:<tenant>:<user>:<version>`.
 */
export function entityWorkflowId(scope: ConsolidationScope): string {
  const user = `consolidate:${idPart(scope.tenantId)}:${idPart(scope.userId)}`;
  return isLaterVersion(scope.version) ? `${user}:${idPart(scope.version)}` : user;
}

/** Whether a scope names a pipeline version other than the first (`v1`, or none). */
export function isLaterVersion(version: string | undefined): version is string {
  return version !== undefined && version !== 'v1';
}
