import { Client, Connection } from '@temporalio/client';
import { temporalConnectionOptions } from './temporal-connection.js';
import type { LightmemConfig } from '../../core/config.js';
import { LightmemError } from '../../core/errors.js';
import {
  countsPerUser,
  type ConsolidationTrigger,
  type NewMemories,
} from '../../core/ports/consolidation-trigger.js';
import {
  consolidationEntityWorkflow,
  newMemoriesSignal,
} from '../../../workflows/consolidation/consolidation.workflow.js';
import {
  consolidationEntityInput,
  entitySettings,
  entityWorkflowId,
  temporalEndpoint,
  type EntitySettings,
  type TemporalEndpoint,
} from './consolidation-entity.js';
import { temporalError } from './temporal-errors.js';

export interface TemporalTriggerOptions extends TemporalEndpoint {
  /** What a user's entity workflow is started with (from config `consolidation`). */
  readonly entity: EntitySettings;
  /** The pipeline version whose indexer this trigger serves (a later one's users have workflows of their own). */
  readonly version?: string | undefined;
  /** How long one notify may take before it fails (retryably); default 10 s. */
  readonly callTimeoutMs?: number | undefined;
}

/**
 * Wakes the users' entity workflows when memories land (distributed mode): for each user of a batch, in
 * parallel, signal-with-start of `consolidate:<tenant>:<user>` with the number of new memories, so a
 * running workflow counts them and a closed (idle) one starts again. The connection is made on first use
 * and re-made by gRPC after a failure. A failure throws a `LightmemError`: retryable when the server is
 * unreachable (`storage_unavailable`) or overloaded (`busy`), so the indexer's batch is retried and no user
 * is left unannounced; a signal sent twice only wakes a workflow once more.
 */
export class TemporalConsolidationTrigger implements ConsolidationTrigger {
  private readonly connection: Connection;
  private readonly client: Client;
  private closed = false;

  constructor(private readonly options: TemporalTriggerOptions) {
    this.connection = Connection.lazy({
      ...temporalConnectionOptions(options),
      connectTimeout: options.callTimeoutMs ?? 10_000,
    });
    this.client = new Client({ connection: this.connection, namespace: options.namespace });
  }

  /** The trigger of a configuration (of a pipeline version's, for a later version). */
  static fromConfig(config: LightmemConfig, version?: string): TemporalConsolidationTrigger {
    return new TemporalConsolidationTrigger({
      ...temporalEndpoint(config),
      entity: entitySettings(config),
      version,
    });
  }

  async notify(batch: readonly NewMemories[]): Promise<void> {
    if (this.closed) throw new LightmemError('internal', 'the Temporal consolidation trigger is closed');
    const version = this.options.version;
    const users = countsPerUser(batch).map((user) => (version === undefined ? user : { ...user, version }));
    if (users.length === 0) return;
    const deadline = Date.now() + (this.options.callTimeoutMs ?? 10_000);
    const results = await Promise.allSettled(
      users.map((user) =>
        this.connection.withDeadline(deadline, () =>
          this.client.workflow.signalWithStart(consolidationEntityWorkflow, {
            workflowId: entityWorkflowId(user),
            taskQueue: this.options.taskQueue,
            args: [consolidationEntityInput(this.options.entity, user)],
            signal: newMemoriesSignal,
            signalArgs: [user.count],
          }),
        ),
      ),
    );
    const failures = results.flatMap((result, index) =>
      result.status === 'rejected'
        ? [temporalError(result.reason, `signalling ${entityWorkflowId(users[index] as NewMemories)}`)]
        : [],
    );
    const [first] = failures;
    if (first === undefined) return;
    // Retried as a whole: a retryable failure wins (signalling the others again is harmless).
    const failure = failures.find((error) => error.retryable) ?? first;
    throw failures.length === 1
      ? failure
      : new LightmemError(
          failure.code,
          `${failures.length} of ${users.length} consolidation wake-ups failed; first: ${failure.message}`,
          { retryable: failure.retryable, cause: failure },
        );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.connection.close();
  }
}
