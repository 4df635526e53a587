import { Client, Connection } from '@temporalio/client';
import type { LightmemConfig } from '../../core/config.js';
import { LightmemError } from '../../core/errors.js';
import { assertId } from '../../core/model/scope.js';
import type { RunHistories } from '../../core/ports/run-histories.js';
import { entityWorkflowId, idPart, temporalEndpoint, type TemporalEndpoint } from './consolidation-entity.js';
import { temporalConnectionOptions } from './temporal-connection.js';
import { temporalError } from './temporal-errors.js';

/**
 * The consolidation runs Temporal keeps about users (distributed mode): a user's entity workflows (of every
 * pipeline version) and run-once workflows. Their histories hold what the activities returned, decision
 * summaries quoting memory text among it, until the namespace's retention ends; erasing a user deletes
 * every one of their executions (a running one is terminated first, by the server).
 */
export class TemporalRunHistories implements RunHistories {
  private readonly connection: Connection;
  private readonly client: Client;
  private closed = false;

  constructor(private readonly endpoint: TemporalEndpoint) {
    this.connection = Connection.lazy({ ...temporalConnectionOptions(endpoint), connectTimeout: 10_000 });
    this.client = new Client({ connection: this.connection, namespace: endpoint.namespace });
  }

  static fromConfig(config: LightmemConfig): TemporalRunHistories {
    return new TemporalRunHistories(temporalEndpoint(config));
  }

  /** Deletes every consolidation execution of the user; returns how many. */
  async eraseUser(tenantId: string, userId: string): Promise<number> {
    if (this.closed) throw new LightmemError('internal', 'the Temporal run histories are closed');
    // Ids are letters, digits and `_ . : @ - / #` (assertId): nothing to escape in a query string.
    const entity = entityWorkflowId({
      tenantId: assertId(tenantId, 'tenantId'),
      userId: assertId(userId, 'userId'),
    });
    const runOnce = `consolidate-now:${idPart(tenantId)}:${idPart(userId)}:`;
    const query = `WorkflowId = '${entity}' OR WorkflowId STARTS_WITH '${entity}:' OR WorkflowId STARTS_WITH '${runOnce}'`;
    let deleted = 0;
    try {
      for await (const execution of this.client.workflow.list({ query })) {
        await this.client.workflowService.deleteWorkflowExecution({
          namespace: this.endpoint.namespace,
          workflowExecution: { workflowId: execution.workflowId, runId: execution.runId },
        });
        deleted++;
      }
    } catch (error) {
      throw temporalError(error, `deleting the consolidation runs of ${tenantId}/${userId}`);
    }
    return deleted;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.connection.close();
  }
}
