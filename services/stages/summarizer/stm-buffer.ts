import { z } from 'zod';
import { BoundaryReasonValues } from '../../core/model/generated.js';
import { SegmentTurnState } from '../segment-turn-state.js';

const StoredSegment = z.object({
  segmentId: z.string(),
  tenantId: z.string(),
  userId: z.string(),
  agentId: z.string().nullable(),
  conversationId: z.string(),
  sessionId: z.string(),
  turns: z.array(SegmentTurnState),
  boundary: z.object({
    reason: z.enum(BoundaryReasonValues),
    similarity: z.number().nullable(),
    threshold: z.number().nullable(),
    note: z.string(),
  }),
  endOfSession: z.boolean(),
  segmenterVersion: z.string(),
  scorerVersion: z.string(),
});

/** The persisted short-term memory buffer of one conversation (state of the summarizer stage). */
export const StmBufferState = z.object({
  tokens: z.number(),
  lastReceivedAt: z.number(),
  segments: z.array(StoredSegment),
  /**
   * Batches due for extraction whose tenant was over its LLM budget: tried again, in order, with the
   * conversation's next record or the summarizer-nudges job's nudge after `retryAt`.
   */
  deferred: z.array(z.object({ segments: z.array(StoredSegment), retryAt: z.number() })).default([]),
});
export type StmBufferState = z.infer<typeof StmBufferState>;
