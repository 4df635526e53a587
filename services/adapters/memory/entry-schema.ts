import { z } from 'zod';
import { MemoryKindValues, type MemoryEntry } from '../../core/model/generated.js';

/** PipelineVersion as stored (a JSON column in SQLite, an object in an Elasticsearch document). */
export const pipelineVersionSchema = z.object({
  scorer: z.string(),
  segmenter: z.string(),
  extractor: z.string(),
  promptHash: z.string().nullable(),
  embedder: z.string().nullable(),
});

/** A MemoryEntry read back from a store that keeps it as a document; unknown keys are dropped. */
export const memoryEntrySchema = z.object({
  id: z.string(),
  tenantId: z.string(),
  userId: z.string(),
  agentId: z.string().nullable(),
  conversationId: z.string(),
  sessionId: z.string(),
  text: z.string(),
  kind: z.enum(MemoryKindValues),
  topicId: z.string(),
  speaker: z.string(),
  occurredAt: z.number().int(),
  zoneOffset: z.string(),
  ingestedAt: z.number().int(),
  validFrom: z.number().int(),
  validTo: z.number().int().nullable(),
  supersededBy: z.string().nullable(),
  sourceTurnIds: z.array(z.string()),
  pipeline: pipelineVersionSchema,
  sourceText: z.string().nullable(),
}) satisfies z.ZodType<MemoryEntry>;
