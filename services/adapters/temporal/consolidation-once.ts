import { randomUUID } from 'node:crypto';
import { Client, Connection, TimeoutFailure, WorkflowFailedError } from '@temporalio/client';
import { temporalConnectionOptions } from './temporal-connection.js';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import { ConsolidationSummarySchema } from '../../core/model/consolidation-summary.js';
import type {
  ConsolidationRunInput,
  ConsolidationSummary,
} from '../../../workflows/consolidation/activity-types.js';
import { consolidateOnceWorkflow } from '../../../workflows/consolidation/consolidation.workflow.js';
import { idPart, type TemporalEndpoint } from './consolidation-entity.js';
import { temporalError, workflowError } from './temporal-errors.js';

/** The id of a run-now workflow: `consolidate-now:<tenant>:<user>:<uuid>`. */
export function runOnceWorkflowId(input: ConsolidationRunInput): string {
  return `consolidate-now:${idPart(input.tenantId)}:${idPart(input.userId)}:${randomUUID()}`;
}

export interface RunOnceOptions {
  /** How long connecting to the server may take; default 10 s. */
  readonly connectTimeoutMs?: number | undefined;
  /** The run fails (`busy`, retryable) when it takes longer (no worker polling, say); default 30 min. */
  readonly timeoutMs?: number | undefined;
}

/**
 * Consolidates one user now on the Temporal workers (`lightmem consolidate` in distributed mode): executes
 * `consolidateOnceWorkflow` and returns its summary. A failed run is thrown as a `LightmemError` of the
 * failing activity's code (`internal` otherwise); an unreachable server as `storage_unavailable`.
 */
export async function runConsolidationOnce(
  endpoint: TemporalEndpoint,
  input: ConsolidationRunInput,
  options: RunOnceOptions = {},
): Promise<ConsolidationSummary> {
  let connection: Connection;
  try {
    connection = await Connection.connect({
      ...temporalConnectionOptions(endpoint),
      connectTimeout: options.connectTimeoutMs ?? 10_000,
    });
  } catch (error) {
    throw temporalError(error, `connecting to Temporal at ${endpoint.address}`);
  }
  const timeoutMs = options.timeoutMs ?? 30 * 60_000;
  try {
    const client = new Client({ connection, namespace: endpoint.namespace });
    const workflowId = runOnceWorkflowId(input);
    let result: unknown;
    try {
      result = await client.workflow.execute(consolidateOnceWorkflow, {
        workflowId,
        taskQueue: endpoint.taskQueue,
        args: [input],
        workflowExecutionTimeout: timeoutMs,
      });
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw temporalError(error, `running ${workflowId}`);
      const failure = workflowError(error, `consolidation ${workflowId} failed`);
      throw error.cause instanceof TimeoutFailure
        ? new LightmemError(
            'busy',
            `consolidation ${workflowId} did not finish within ${timeoutMs} ms (is a consolidator worker running on ${endpoint.taskQueue}?)`,
            { retryable: true, cause: error },
          )
        : failure;
    }
    const decoded = ConsolidationSummarySchema.safeParse(result);
    if (!decoded.success) {
      throw new LightmemError(
        'internal',
        `consolidation ${workflowId} returned an unexpected summary: ${z.prettifyError(decoded.error)}`,
        { cause: decoded.error },
      );
    }
    return decoded.data;
  } finally {
    await connection.close();
  }
}
