import { z } from 'zod';
import { InvalidInputError, LightmemError } from '../../core/errors.js';
import { MemoryOpKindValues, type MemoryEntry, type MemoryOp } from '../../core/model/generated.js';
import { assertId } from '../../core/model/scope.js';
import type { MemoryHistory, MemoryWrite, OpWrite, RecordedOp } from '../../core/ports/memory-store.js';
import { validateWrite } from './request-checks.js';
import { memoryEntrySchema } from './entry-schema.js';

/** A checked op and the writes of its replacements. */
export interface OpPlan {
  readonly op: MemoryOp;
  readonly replacements: MemoryWrite[];
}

/**
 * Checks one op before any of a batch is applied (shared by every store): ids, kind, and that every
 * replacement is a valid entry of the op's own tenant and user, with its embedding. `erase` ops are refused
 * here: erasure has its own path.
 */
export function planOp(write: OpWrite, index: number): OpPlan {
  const { op } = write;
  const at = (field: string) => `ops[${index}].${field}`;
  assertId(op.opId, at('opId'));
  assertId(op.tenantId, at('tenantId'));
  if (op.userId !== null) assertId(op.userId, at('userId'));
  if (!MemoryOpKindValues.includes(op.op)) {
    throw new InvalidInputError(`unknown op ${JSON.stringify(op.op)}`, at('op'));
  }
  if (op.op === 'erase') {
    throw new LightmemError('invalid_input', 'erase ops are not applied by applyOps (use erase)', {
      field: at('op'),
    });
  }
  if (op.targetIds.length === 0) throw new InvalidInputError('an op needs a target', at('targetIds'));
  op.targetIds.forEach((id, i) => assertId(id, at(`targetIds[${i}]`)));
  op.replacementIds.forEach((id, i) => assertId(id, at(`replacementIds[${i}]`)));
  if ((op.op === 'update' || op.op === 'supersede') && op.replacementIds.length === 0) {
    throw new InvalidInputError(`${op.op} needs a replacement id`, at('replacementIds'));
  }
  if (op.validTo !== null && !Number.isSafeInteger(op.validTo)) {
    throw new InvalidInputError('validTo must be null or an integer epoch ms', at('validTo'));
  }
  const replacements = op.op === 'update' ? op.replacements : [];
  if (op.op === 'update' && replacements.length === 0) {
    throw new InvalidInputError('an update carries its new versions', at('replacements'));
  }
  const writes = replacements.map((entry, i): MemoryWrite => {
    const embedding = write.embeddings?.[i];
    const replacement: MemoryWrite = { entry, embedding };
    validateWrite(replacement, i);
    if (entry.tenantId !== op.tenantId || (op.userId !== null && entry.userId !== op.userId)) {
      throw new InvalidInputError(
        'a replacement must belong to the op’s tenant and user',
        at(`replacements[${i}]`),
      );
    }
    if (!op.replacementIds.includes(entry.id)) {
      throw new InvalidInputError(
        'a replacement’s id must be in replacementIds',
        at(`replacements[${i}].id`),
      );
    }
    if (op.targetIds.includes(entry.id)) {
      throw new InvalidInputError('a replacement cannot be one of its targets', at(`replacements[${i}].id`));
    }
    return replacement;
  });
  return { op, replacements: writes };
}

export type OpRole = 'target' | 'replacement' | 'source';

/** The memories an op is about, with their role (history looks ops up by these). */
export function opTouches(op: MemoryOp): [string, OpRole][] {
  return [
    ...op.targetIds.map((id): [string, OpRole] => [id, 'target']),
    ...op.replacementIds.map((id): [string, OpRole] => [id, 'replacement']),
    ...op.sourceIds.map((id): [string, OpRole] => [id, 'source']),
  ];
}

/** A MemoryOp as a store keeps it (JSON); fields added to the record since default for older copies. */
export const memoryOpSchema = z.object({
  opId: z.string(),
  op: z.enum(MemoryOpKindValues),
  tenantId: z.string(),
  userId: z.string().nullable(),
  targetIds: z.array(z.string()),
  replacementIds: z.array(z.string()),
  reason: z.string(),
  requestedBy: z.string(),
  requestedAt: z.number().int(),
  sourceIds: z.array(z.string()).default([]),
  validTo: z.number().int().nullable().default(null),
  decidedBy: z.string().default(''),
  replacements: z.array(memoryEntrySchema).default([]),
});

/** A recorded op as a store keeps it (the op as JSON, its outcome, when it was applied). */
export function parseRecordedOp(row: { op: string; outcome: string; applied_at: number }): RecordedOp {
  try {
    const op = memoryOpSchema.parse(JSON.parse(row.op));
    const outcome = z.enum(['applied', 'stale']).parse(row.outcome);
    return { op, outcome, appliedAt: row.applied_at };
  } catch (error) {
    throw new LightmemError('storage_corrupt', 'memory store: unreadable recorded op', { cause: error });
  }
}

/** Versions oldest first (validFrom, occurredAt, id); ops in the order they were applied. */
export function orderHistory(
  versions: readonly MemoryEntry[],
  ops: readonly (readonly [number, RecordedOp])[],
): MemoryHistory {
  return {
    versions: [...versions].sort(
      (a, b) => a.validFrom - b.validFrom || a.occurredAt - b.occurredAt || compare(a.id, b.id),
    ),
    ops: [...ops]
      .sort(([seqA, a], [seqB, b]) => a.appliedAt - b.appliedAt || seqA - seqB)
      .map(([, recorded]) => recorded),
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
