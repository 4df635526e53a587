import { z } from 'zod';
import type { ConsolidationSummary } from '../../../workflows/consolidation/activity-types.js';

const count = z.number().int().nonnegative();

/**
 * What a consolidation did, as it crosses a boundary: a Temporal workflow's result (maybe from a worker of
 * another version), the HTTP API's and MCP's answer. The one schema of `ConsolidationSummary`.
 */
export const ConsolidationSummarySchema = z.object({
  tenantId: z.string(),
  userId: z.string(),
  version: z.string().optional(),
  dryRun: z.boolean(),
  runs: count,
  policy: z.string().nullable(),
  sources: count,
  targets: count,
  counts: z.object({ update: count, supersede: count, ignore: count, merge: count }),
  skipped: count,
  problems: count,
  decisions: z.array(
    z.object({
      opId: z.string(),
      op: z.enum(['update', 'supersede', 'ignore']),
      merge: z.boolean(),
      targetIds: z.array(z.string()),
      sourceIds: z.array(z.string()),
      replacementIds: z.array(z.string()),
      text: z.string().nullable(),
      reason: z.string(),
      problem: z.string().nullable(),
    }),
  ),
}) satisfies z.ZodType<ConsolidationSummary>;
