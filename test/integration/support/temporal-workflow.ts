// A Temporal workflow (bundled by the worker, deterministic): calls an activity, sleeps on a durable
// timer, calls it again. The sleep-time consolidation workflows of a later issue have this shape.
import { proxyActivities, sleep } from '@temporalio/workflow';

export interface ProbeActivities {
  countMemories(tenantId: string): Promise<number>;
}

const { countMemories } = proxyActivities<ProbeActivities>({ startToCloseTimeout: '10 seconds' });

export async function consolidationProbe(tenantId: string): Promise<{ before: number; after: number }> {
  const before = await countMemories(tenantId);
  await sleep('200 milliseconds');
  const after = await countMemories(tenantId);
  return { before, after };
}
