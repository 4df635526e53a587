import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';

/** One operation of a bulk write. Ids are unique within one bulkWrite call. */
export type BulkOp =
  | { readonly kind: 'create'; readonly index: string; readonly id: string; readonly doc: object }
  | {
      readonly kind: 'index' | 'update';
      readonly index: string;
      readonly id: string;
      /** Optimistic concurrency: the write fails with 409 when the document changed since it was read. */
      readonly ifSeqNo: number;
      readonly ifPrimaryTerm: number;
      readonly doc: object;
    }
  | { readonly kind: 'delete'; readonly index: string; readonly id: string };

export interface BulkOutcome {
  /** HTTP status of the item (2xx done; 404 a delete of a missing document; 409 a conflict…). */
  readonly status: number;
  readonly error: { readonly type?: string; readonly reason?: string | null } | null;
  /** The written version's sequence number and primary term (successful writes). */
  readonly seqNo?: number | undefined;
  readonly primaryTerm?: number | undefined;
}

export type Refresh = 'true' | 'wait_for' | 'false';

const itemSchema = z.object({
  _id: z.string().nullish(),
  status: z.number().int(),
  _seq_no: z.number().int().optional(),
  _primary_term: z.number().int().optional(),
});
const resultSchema = z.record(z.string(), itemSchema);
const operationSchema = z.record(z.string(), z.object({ _id: z.string() }));

/**
 * Writes `ops` with the client's bulk helper (chunked by size, sent concurrently, 429 items retried by the
 * helper) and returns each item's outcome by id. A failure of a whole request (server down) rejects.
 */
export async function bulkWrite(
  client: Client,
  ops: readonly BulkOp[],
  refresh: Refresh,
): Promise<Map<string, BulkOutcome>> {
  const outcomes = new Map<string, BulkOutcome>();
  if (ops.length === 0) return outcomes;
  await client.helpers.bulk<BulkOp>({
    datasource: [...ops],
    refresh,
    retries: 2,
    wait: 250,
    concurrency: 4,
    onDocument: (op) => {
      switch (op.kind) {
        case 'create':
          return [{ create: { _index: op.index, _id: op.id } }, op.doc];
        case 'index':
          return [
            {
              index: {
                _index: op.index,
                _id: op.id,
                if_seq_no: op.ifSeqNo,
                if_primary_term: op.ifPrimaryTerm,
              },
            },
            op.doc,
          ];
        case 'update':
          return [
            {
              update: {
                _index: op.index,
                _id: op.id,
                if_seq_no: op.ifSeqNo,
                if_primary_term: op.ifPrimaryTerm,
              },
            },
            { doc: op.doc },
          ];
        case 'delete':
          return { delete: { _index: op.index, _id: op.id } };
      }
    },
    onSuccess: ({ result }) => {
      for (const item of Object.values(resultSchema.parse(result))) {
        if (item._id != null) {
          outcomes.set(item._id, {
            status: item.status,
            error: null,
            seqNo: item._seq_no,
            primaryTerm: item._primary_term,
          });
        }
      }
    },
    onDrop: (dropped) => {
      const action: unknown = Array.isArray(dropped.operation) ? dropped.operation[0] : dropped.operation;
      for (const { _id } of Object.values(operationSchema.parse(action))) {
        outcomes.set(_id, { status: dropped.status, error: errorCause(dropped.error) });
      }
    },
  });
  return outcomes;
}

function errorCause(error: estypes.ErrorCause | null): BulkOutcome['error'] {
  if (error === null) return null;
  return { type: error.type, reason: error.reason ?? null };
}
