import { InvalidInputError } from '../../core/errors.js';
import type { MemoryOp } from '../../core/model/generated.js';
import type { MemoryWrite, OpWrite } from '../../core/ports/memory-store.js';
import { planOp } from '../memory/op-plan.js';
import { MAX_ID_BYTES } from './es-mapping.js';
import { opDocId } from './es-ops.js';

/** An op that passed every check, with its replacements as writes (entry + embedding). */
export interface CheckedOp {
  /** Position in the caller's batch (error fields name it). */
  readonly index: number;
  readonly op: MemoryOp;
  readonly replacements: readonly MemoryWrite[];
  /** Document id of its record (tenant-qualified opId). */
  readonly key: string;
}

/**
 * Checks a batch of ops before anything is written, with the checks every store shares (planOp: an `erase`
 * op, a malformed op, a replacement outside the op's tenant or user fail the whole call with a non-retryable
 * `invalid_input`), plus Elasticsearch's own limit on document ids.
 */
export function checkOps(ops: readonly OpWrite[]): CheckedOp[] {
  return ops.map((write, index) => {
    const { op, replacements } = planOp(write, index);
    replacements.forEach(({ entry }, i) => {
      if (Buffer.byteLength(entry.id) > MAX_ID_BYTES) {
        throw new InvalidInputError(
          `id is longer than ${MAX_ID_BYTES} bytes`,
          `ops[${index}].replacements[${i}].id`,
        );
      }
    });
    return { index, op, replacements, key: opDocId(op.tenantId, op.opId) };
  });
}
