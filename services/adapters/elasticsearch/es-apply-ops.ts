import type { Client } from '@elastic/elasticsearch';
import { LightmemError } from '../../core/errors.js';
import type { MemoryOp } from '../../core/model/generated.js';
import type { ApplyResult, MemoryWrite } from '../../core/ports/memory-store.js';
import { contentHash } from '../memory/content-hash.js';
import { planUpsert } from '../memory/upsert-plan.js';
import { bulkWrite, type BulkOp, type BulkOutcome, type Refresh } from './es-bulk.js';
import { isFenced, type ErasedAt } from './es-erased-users.js';
import { bulkItemFailure } from './es-errors.js';
import { keptClosedBy, readExisting, type ExistingDoc } from './es-existing.js';
import type { IndexNames } from './es-mapping.js';
import { toDocument } from './es-mapping.js';
import type { CheckedOp } from './es-op-checks.js';
import { readRecordedKeys, toOpDocument, type RecordedOutcome } from './es-ops.js';

/**
 * Applying ops to the Elasticsearch memory store. Elasticsearch has no multi-document transaction, so each
 * op is made safe to interrupt and to race instead:
 *
 * 1. Its targets are closed with conditional updates (if_seq_no) that also record the op as `closedBy`.
 * 2. Once every target is closed, its replacements are written (as already consolidated).
 * 3. Only then is the op recorded (`create` of its tenant-qualified id: a concurrent duplicate gets 409).
 *
 * An op interrupted after 1 or 2 runs again in full: a target closed by the same opId counts as current
 * for it, and rewriting a replacement is unchanged. A write that lost a race is decided again from fresh
 * reads; if the op turned stale meanwhile (another op closed one of its targets), the targets this call
 * closed are opened again before the op is recorded as stale.
 *
 * A batch runs in waves: an op waits for the earlier ops that name one of its memories (or its opId), so an
 * op can target what an earlier op of the same batch wrote and each wave writes a memory at most once. Each
 * wave reads with two mgets and writes with at most three bulk requests, whatever its size.
 *
 * Erased users (es-erased-users.ts): an op of an erased user decided before the erasure (`requestedAt`), or
 * whose targets the erasure removed, is fenced: counted as stale but neither applied nor recorded (its
 * replacements hold the erased user's text). A replacement of an erased user extracted before the erasure
 * (`ingestedAt`) is not written, as upsert refuses it. As in the SQLite store.
 */

/** Rounds of one wave before it gives up with `busy` (retryable). */
const MAX_ROUNDS = 5;

export interface ApplyContext {
  readonly client: Client;
  readonly names: IndexNames;
  readonly refresh: Refresh;
  /** appliedAt of every op of the call (and consolidatedAt of the replacements it writes). */
  readonly appliedAt: number;
  /** When the users of the call's ops and replacements were erased (null: never). */
  readonly erasedAt: ErasedAt;
  /** Called before the first memory write (records the embedder of the index's first vectors). */
  readonly beforeWrite: () => Promise<void>;
}

interface Counts {
  applied: number;
  stale: number;
  duplicate: number;
}

/** A target this call closed: what to restore if its op turns stale. */
interface Closed {
  readonly id: string;
  readonly validTo: number | null;
}

/** What one round decided for one op. */
interface Plan {
  readonly item: CheckedOp;
  readonly outcome: RecordedOutcome;
  /** False for an op of an erased user that is fenced: counted as stale, never recorded. */
  readonly record: boolean;
  /** Conditional updates closing the targets (only those not closed by this op yet). */
  readonly closes: BulkOp[];
  readonly closing: Closed[];
  /** Writes of the replacements that differ from what is stored. */
  readonly replacements: { readonly op: BulkOp; readonly field: string }[];
}

export async function applyCheckedOps(
  context: ApplyContext,
  ops: readonly CheckedOp[],
): Promise<ApplyResult> {
  const counts: Counts = { applied: 0, stale: 0, duplicate: 0 };
  for (const wave of opWaves(ops)) await applyWave(context, wave, counts);
  return counts;
}

/** Splits a batch into waves in batch order; an op goes after every earlier op sharing an id with it. */
export function opWaves(ops: readonly CheckedOp[]): CheckedOp[][] {
  const lastWave = new Map<string, number>();
  const waves: CheckedOp[][] = [];
  for (const item of ops) {
    const keys = [
      `op:${item.key}`,
      ...item.op.targetIds.map((id) => `memory:${id}`),
      ...item.replacements.map((write) => `memory:${write.entry.id}`),
    ];
    const wave = 1 + keys.reduce((max, key) => Math.max(max, lastWave.get(key) ?? -1), -1);
    for (const key of keys) lastWave.set(key, wave);
    (waves[wave] ??= []).push(item);
  }
  return waves;
}

async function applyWave(context: ApplyContext, wave: readonly CheckedOp[], counts: Counts): Promise<void> {
  const { client, names } = context;
  // Targets closed by this call, per op (by record key): re-opened if the op turns stale.
  const closedHere = new Map<string, Closed[]>();
  let pending = [...wave];
  for (let round = 0; round < MAX_ROUNDS && pending.length > 0; round++) {
    const recorded = await recordedKeys(context, pending);
    const fresh = pending.filter((item) => {
      if (!recorded.has(item.key)) return true;
      counts.duplicate++;
      return false;
    });
    const docs = await readExisting(
      client,
      names.alias,
      fresh.flatMap((item) => [...item.op.targetIds, ...item.replacements.map((write) => write.entry.id)]),
    );
    const plans = fresh.map((item) => planOp(context, item, docs));

    // 1. Close targets; re-open the ones a now-stale op had closed.
    const reopen = plans.flatMap((plan) =>
      plan.outcome === 'stale' ? reopenOps(plan.item.op, closedHere.get(plan.item.key) ?? [], docs) : [],
    );
    const closes = plans.flatMap((plan) => plan.closes);
    if (closes.length > 0 || plans.some((plan) => plan.replacements.length > 0)) await context.beforeWrite();
    const closeOutcomes = await bulkWrite(client, [...closes, ...reopen], context.refresh);
    for (const op of reopen) {
      const outcome = mustHave(closeOutcomes, op.id);
      // 409 / 404: changed or erased meanwhile by someone else, whose write stands.
      if (outcome.status >= 300 && outcome.status !== 409 && outcome.status !== 404) {
        throw bulkItemFailure(outcome.status, outcome.error, 'applyOps (re-opening a target)');
      }
    }
    const retry: CheckedOp[] = [];
    const closedAll: Plan[] = [];
    for (const plan of plans) {
      if (plan.outcome === 'stale') {
        closedHere.delete(plan.item.key);
        closedAll.push(plan);
        continue;
      }
      let lost = false;
      for (const [i, op] of plan.closes.entries()) {
        const outcome = mustHave(closeOutcomes, op.id);
        if (outcome.status < 300) {
          const closed = plan.closing[i];
          if (closed !== undefined) {
            closedHere.set(plan.item.key, [...(closedHere.get(plan.item.key) ?? []), closed]);
          }
        } else if (outcome.status === 409 || outcome.status === 404) {
          // Changed or erased since it was read: decided again next round.
          lost = true;
        } else {
          throw bulkItemFailure(
            outcome.status,
            outcome.error,
            'applyOps',
            `ops[${plan.item.index}].targetIds`,
          );
        }
      }
      if (lost) retry.push(plan.item);
      else closedAll.push(plan);
    }

    // 2. Write the replacements of the ops whose targets are all closed.
    const replacementOutcomes = await bulkWrite(
      client,
      closedAll.flatMap((plan) => plan.replacements.map((r) => r.op)),
      context.refresh,
    );
    const done: Plan[] = [];
    for (const plan of closedAll) {
      let lost = false;
      for (const { op, field } of plan.replacements) {
        const outcome = mustHave(replacementOutcomes, op.id);
        if (outcome.status === 409) lost = true;
        else if (outcome.status >= 300)
          throw bulkItemFailure(outcome.status, outcome.error, 'applyOps', field);
      }
      if (lost) retry.push(plan.item);
      else done.push(plan);
    }

    // 3. Record the ops that are done (applied or stale), except the fenced ones.
    const recording = done.filter((plan) => {
      if (plan.record) return true;
      counts.stale++;
      closedHere.delete(plan.item.key);
      return false;
    });
    const recordOutcomes = await bulkWrite(
      client,
      recording.map((plan) => ({
        kind: 'create',
        index: names.ops.alias,
        id: plan.item.key,
        doc: toOpDocument(plan.item.op, plan.outcome, context.appliedAt),
      })),
      context.refresh,
    );
    for (const plan of recording) {
      const outcome = mustHave(recordOutcomes, plan.item.key);
      if (outcome.status < 300) counts[plan.outcome]++;
      // Recorded meanwhile by a concurrent apply of the same op.
      else if (outcome.status === 409) counts.duplicate++;
      else
        throw bulkItemFailure(
          outcome.status,
          outcome.error,
          'applyOps (recording)',
          `ops[${plan.item.index}]`,
        );
      closedHere.delete(plan.item.key);
    }
    pending = retry;
  }
  if (pending.length > 0) {
    throw new LightmemError('busy', 'memories kept changing while ops were applied; try again', {
      retryable: true,
    });
  }
}

/** Decides one op from fresh reads: fenced, stale, or the writes that apply it. */
function planOp(context: ApplyContext, item: CheckedOp, docs: ReadonlyMap<string, ExistingDoc>): Plan {
  const { op } = item;
  const erased = op.userId === null ? null : context.erasedAt(op.tenantId, op.userId);
  const stale: Plan = { item, outcome: 'stale', record: true, closes: [], closing: [], replacements: [] };
  // Decided before its user was erased, or about memories the erasure removed: not applied, not recorded.
  const fenced: Plan = { ...stale, record: false };
  if (erased !== null && op.requestedAt <= erased) return fenced;
  const targets: [string, ExistingDoc][] = [];
  for (const id of op.targetIds) {
    const doc = docs.get(id);
    if (doc === undefined || !isCurrentFor(doc, op)) return erased === null ? stale : fenced;
    targets.push([id, doc]);
  }
  if (op.op === 'ignore') {
    return { item, outcome: 'applied', record: true, closes: [], closing: [], replacements: [] };
  }
  const by = op.replacementIds[0] ?? null;
  const validTo = op.validTo ?? op.requestedAt;
  const closes: BulkOp[] = [];
  const closing: Closed[] = [];
  for (const [id, doc] of targets) {
    if (doc.closedBy === op.opId) continue;
    closes.push({
      kind: 'update',
      index: doc.index,
      id,
      ifSeqNo: doc.seqNo,
      ifPrimaryTerm: doc.primaryTerm,
      doc: { validTo, supersededBy: by, closedBy: op.opId },
    });
    closing.push({ id, validTo: doc.memory.validTo });
  }
  const replacements = item.replacements.flatMap((write, j) => {
    const field = `ops[${item.index}].op.replacements[${j}]`;
    const op = replacementWrite(context, write, docs.get(write.entry.id));
    return op === null ? [] : [{ op, field }];
  });
  return { item, outcome: 'applied', record: true, closes, closing, replacements };
}

/** A current version in the op's tenant (and user), or one this very op closed before (a re-run). */
function isCurrentFor(doc: ExistingDoc, op: MemoryOp): boolean {
  if (doc.memory.tenantId !== op.tenantId) return false;
  if (op.userId !== null && doc.memory.userId !== op.userId) return false;
  return doc.memory.supersededBy === null || doc.closedBy === op.opId;
}

/**
 * The write of one replacement: a new version, already consolidated (it comes from consolidation). Written
 * again only when it differs from what is stored (a re-run finds it unchanged). A replacement id held in
 * another scope is a `conflict`, as in upsert.
 */
function replacementWrite(
  context: ApplyContext,
  write: MemoryWrite,
  existing: ExistingDoc | undefined,
): BulkOp | null {
  const { entry, embedding } = write;
  // Extracted before its user was erased: it stays erased (the op still closes its targets).
  if (isFenced(context.erasedAt, entry)) return null;
  const hash = contentHash(entry, embedding);
  const decision = planUpsert(entry, hash, existing?.memory);
  if (decision.action === 'unchanged') {
    if (existing === undefined || existing.consolidatedAt !== null) return null;
    return {
      kind: 'update',
      index: existing.index,
      id: entry.id,
      ifSeqNo: existing.seqNo,
      ifPrimaryTerm: existing.primaryTerm,
      doc: { consolidatedAt: context.appliedAt },
    };
  }
  const doc = toDocument(entry, {
    validTo: decision.validTo,
    supersededBy: decision.supersededBy,
    ingestedAt: existing?.ingestedAt ?? entry.ingestedAt,
    contentHash: hash,
    embedding,
    consolidatedAt: existing?.consolidatedAt ?? context.appliedAt,
    closedBy: keptClosedBy(entry.supersededBy, existing),
  });
  if (existing === undefined) return { kind: 'create', index: context.names.alias, id: entry.id, doc };
  return {
    kind: 'index',
    index: existing.index,
    id: entry.id,
    ifSeqNo: existing.seqNo,
    ifPrimaryTerm: existing.primaryTerm,
    doc,
  };
}

/** Conditional updates opening again the targets this call closed for `op` (still closed by it). */
function reopenOps(
  op: MemoryOp,
  closed: readonly Closed[],
  docs: ReadonlyMap<string, ExistingDoc>,
): BulkOp[] {
  return closed.flatMap((target): BulkOp[] => {
    const doc = docs.get(target.id);
    if (doc === undefined || doc.closedBy !== op.opId) return [];
    return [
      {
        kind: 'update',
        index: doc.index,
        id: target.id,
        ifSeqNo: doc.seqNo,
        ifPrimaryTerm: doc.primaryTerm,
        doc: { validTo: target.validTo, supersededBy: null, closedBy: null },
      },
    ];
  });
}

async function recordedKeys(context: ApplyContext, items: readonly CheckedOp[]): Promise<Set<string>> {
  return readRecordedKeys(
    context.client,
    context.names.ops,
    items.map(({ key, op }) => ({ key, tenantId: op.tenantId, opId: op.opId })),
  );
}

function mustHave(outcomes: ReadonlyMap<string, BulkOutcome>, id: string): BulkOutcome {
  const outcome = outcomes.get(id);
  if (outcome === undefined) throw new LightmemError('internal', `bulk write reported nothing for ${id}`);
  return outcome;
}
