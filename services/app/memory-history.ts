import type { MemoryOpKind } from '../core/model/generated.js';
import type { MemoryHistory, RecordedOp } from '../core/ports/memory-store.js';
import { formatInstant } from '../core/model/time.js';
import { memoryView, type MemoryView } from './memory-search.js';

/** A decision as the history shows it: what it did, to which versions, prompted by which memories, why. */
export interface DecisionView {
  readonly opId: string;
  readonly op: MemoryOpKind;
  readonly outcome: RecordedOp['outcome'];
  readonly decidedBy: string;
  readonly requestedBy: string;
  readonly reason: string;
  readonly targetIds: readonly string[];
  readonly sourceIds: readonly string[];
  readonly replacementIds: readonly string[];
  readonly appliedAt: string;
}

/** One version of a memory: the memory with its provenance, the decision that made it and the one that closed it. */
export interface VersionView extends MemoryView {
  readonly current: boolean;
  readonly madeBy: string | null;
  readonly closedBy: string | null;
}

export interface HistoryView {
  readonly id: string;
  /** Oldest first. */
  readonly versions: readonly VersionView[];
  readonly decisions: readonly DecisionView[];
}

export function decisionView({ op, outcome, appliedAt }: RecordedOp): DecisionView {
  return {
    opId: op.opId,
    op: op.op,
    outcome,
    decidedBy: op.decidedBy,
    requestedBy: op.requestedBy,
    reason: op.reason,
    targetIds: op.targetIds,
    sourceIds: op.sourceIds,
    replacementIds: op.replacementIds,
    appliedAt: formatInstant(appliedAt, '+00:00'),
  };
}

/** The versions of a memory with the decisions that made and closed each (applied ones; stale ones listed). */
export function historyView(id: string, history: MemoryHistory): HistoryView {
  const applied = history.ops.filter((recorded) => recorded.outcome === 'applied');
  const madeBy = (versionId: string) =>
    applied.find(({ op }) => op.op === 'update' && op.replacementIds.includes(versionId))?.op.opId ?? null;
  const closedBy = (versionId: string) =>
    applied.find(
      ({ op }) => (op.op === 'update' || op.op === 'supersede') && op.targetIds.includes(versionId),
    )?.op.opId ?? null;
  return {
    id,
    versions: history.versions.map((entry) => ({
      ...memoryView(entry),
      current: entry.supersededBy === null,
      madeBy: madeBy(entry.id),
      closedBy: closedBy(entry.id),
    })),
    decisions: history.ops.map(decisionView),
  };
}
