import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError, UnavailableError } from '../../core/errors.js';

/**
 * The documents of an mget that were found, their sources decoded with `source`. A document the cluster
 * failed to read is a retryable failure; an answer of another shape is an internal error. `what` names
 * the documents in errors (e.g. "op", "erased user").
 */
export async function mgetFound<S extends z.ZodType>(
  client: Client,
  request: estypes.MgetRequest,
  source: S,
  what: string,
): Promise<{ readonly id: string; readonly source: z.infer<S> }[]> {
  const response = z
    .object({
      docs: z.array(
        z.object({
          _id: z.string(),
          found: z.boolean().optional(),
          _source: source.optional(),
          error: z.object({ type: z.string(), reason: z.string().nullish() }).loose().optional(),
        }),
      ),
    })
    .safeParse(await client.mget(request));
  if (!response.success) {
    throw new LightmemError('internal', 'elasticsearch: unexpected mget response', { cause: response.error });
  }
  const found: { id: string; source: z.infer<S> }[] = [];
  for (const doc of response.data.docs) {
    if (doc.error !== undefined) {
      throw new UnavailableError(
        `elasticsearch mget of ${what} ${doc._id} failed: ${doc.error.type}`,
        doc.error,
      );
    }
    if (doc.found === true && doc._source !== undefined) found.push({ id: doc._id, source: doc._source });
  }
  return found;
}
