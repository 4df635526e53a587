import { z } from 'zod';
import { RoleValues, type SegmentTurn } from '../core/model/generated.js';

/** A SegmentTurn as persisted in stage state (sensory and STM buffers), decoded on load. */
export const SegmentTurnState = z.object({
  turnId: z.string(),
  seq: z.number(),
  role: z.enum(RoleValues),
  speaker: z.string(),
  text: z.string(),
  tokens: z.number(),
  occurredAt: z.number(),
  zoneOffset: z.string(),
  // Absent in state written before the field existed.
  sourceText: z.string().nullable().default(null),
}) satisfies z.ZodType<SegmentTurn>;
