import { z } from 'zod';
import { SegmentTurnState } from '../segment-turn-state.js';

/** The persisted sensory buffer of one conversation (state of the segmenter stage). */
export const SensoryBufferState = z.object({
  tenantId: z.string(),
  userId: z.string(),
  agentId: z.string().nullable(),
  conversationId: z.string(),
  sessionId: z.string(),
  scorerVersion: z.string(),
  /** Tokens of the turns whose roles count toward the capacity. */
  countedTokens: z.number(),
  lastTurnId: z.string(),
  lastReceivedAt: z.number(),
  turns: z.array(SegmentTurnState),
});
export type SensoryBufferState = z.infer<typeof SensoryBufferState>;
