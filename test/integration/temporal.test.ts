import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { servers } from './support/servers.js';
import type { ProbeActivities, consolidationProbe } from './support/temporal-workflow.js';

/** The Temporal dev server started by `npm run infra:up` runs a real workflow with an activity and a timer. */
describe('Temporal (real dev server)', () => {
  it('runs a workflow to completion on a worker of ours', async () => {
    const taskQueue = `lightmem-test-${randomUUID()}`;
    const calls: string[] = [];
    const activities: ProbeActivities = {
      countMemories: async (tenantId) => {
        calls.push(tenantId);
        return calls.length * 10;
      },
    };
    const workerConnection = await NativeConnection.connect({ address: servers.temporalAddress });
    const clientConnection = await Connection.connect({ address: servers.temporalAddress });
    try {
      const worker = await Worker.create({
        connection: workerConnection,
        taskQueue,
        workflowsPath: new URL('./support/temporal-workflow.ts', import.meta.url).pathname,
        activities,
      });
      const client = new Client({ connection: clientConnection });
      const result: unknown = await worker.runUntil(
        client.workflow.execute<typeof consolidationProbe>('consolidationProbe', {
          taskQueue,
          workflowId: `probe-${randomUUID()}`,
          args: ['tenant-a'],
        }),
      );
      assert.deepEqual(result, { before: 10, after: 20 });
      assert.deepEqual(calls, ['tenant-a', 'tenant-a']);
    } finally {
      await clientConnection.close();
      await workerConnection.close();
    }
  });
});
