import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError, UnavailableError } from '../../core/errors.js';
import { esFailure, isIndexNotFound, statusOf } from './es-errors.js';

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

const GetResult = z.object({
  found: z.boolean(),
  _source: z.unknown().optional(),
  _seq_no: z.number().optional(),
  _primary_term: z.number().optional(),
});

/** A document with what optimistic concurrency needs to write it back (`if_seq_no`, `if_primary_term`). */
export interface VersionedDoc {
  readonly source: unknown;
  readonly seqNo: number;
  readonly primaryTerm: number;
}

/**
 * A document by id, real time, with its sequence number and primary term; undefined when there is none. A
 * missing index is a failure, not "none". `action` names the read in errors.
 */
export async function getVersioned(
  client: Client,
  index: string,
  id: string,
  action: string,
): Promise<VersionedDoc | undefined> {
  let response: unknown;
  try {
    response = await client.get({ index, id, realtime: true });
  } catch (error) {
    if (statusOf(error) === 404 && !isIndexNotFound(error)) return undefined;
    throw esFailure(error, action);
  }
  const result = GetResult.safeParse(response);
  if (!result.success) {
    throw new LightmemError('internal', `elasticsearch ${action}: unexpected answer`, {
      cause: result.error,
    });
  }
  const { found, _source, _seq_no, _primary_term } = result.data;
  if (!found) return undefined;
  if (_seq_no === undefined || _primary_term === undefined) {
    throw new LightmemError('internal', `elasticsearch ${action}: the document has no version`);
  }
  return { source: _source, seqNo: _seq_no, primaryTerm: _primary_term };
}
