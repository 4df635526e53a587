import type { MemoryEntry, MemoryOp } from '../../core/model/generated.js';
import { stableId } from '../../core/model/ids.js';
import type { CaseDecision, UpdateCase } from './decision.js';
import { compareByTime } from './update-queues.js';

/** Who asks and when: the same for every op of a run. */
export interface OpContext {
  /** The deciding policy (`llm:<model>@<hash>`, `near-duplicate@0.97`): part of every op id. */
  readonly policy: string;
  readonly requestedBy: string;
  readonly now: number;
}

/**
 * The op id of a decision: the same target versions, source set and policy always give the same id, so a
 * decision made twice (a retried activity, a replayed run) is applied once.
 */
export function decisionOpId(
  tenantId: string,
  userId: string,
  targetIds: readonly string[],
  sourceIds: readonly string[],
  policy: string,
): string {
  return stableId('op', [
    tenantId,
    userId,
    policy,
    ...[...targetIds].sort().map((id) => `t:${id}`),
    ...[...sourceIds].sort().map((id) => `s:${id}`),
  ]);
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/** The distinct source texts of some versions, in order (what search matches a merged version by). */
function joinedSourceText(entries: readonly MemoryEntry[]): string | null {
  const texts = unique(entries.map((entry) => entry.sourceText ?? entry.text));
  return entries.every((entry) => entry.sourceText === null) && texts.length === 1 ? null : texts.join('\n');
}

/**
 * A new version made from `base` (kept: scope, kind, speaker, topic, pipeline) that cites every turn of
 * `versions`; valid from `validFrom` on, with an id derived from the op.
 */
function newVersion(
  base: MemoryEntry,
  versions: readonly MemoryEntry[],
  fields: {
    readonly opId: string;
    readonly text: string;
    readonly sourceText: string | null;
    readonly validFrom: number;
    readonly now: number;
    readonly promptHash: string | null;
  },
): MemoryEntry {
  const earliest = [...versions].sort(compareByTime)[0] ?? base;
  return {
    ...base,
    id: stableId('mem', ['version', fields.opId]),
    text: fields.text,
    occurredAt: earliest.occurredAt,
    zoneOffset: earliest.zoneOffset,
    ingestedAt: fields.now,
    validFrom: fields.validFrom,
    validTo: null,
    supersededBy: null,
    sourceTurnIds: unique(versions.flatMap((version) => version.sourceTurnIds)),
    sourceText: fields.sourceText,
    pipeline: { ...base.pipeline, promptHash: fields.promptHash },
  };
}

function baseOp(
  target: MemoryEntry,
  targetIds: readonly string[],
  sourceIds: readonly string[],
  context: OpContext,
): Omit<MemoryOp, 'op' | 'replacementIds' | 'replacements' | 'reason' | 'validTo'> {
  return {
    opId: decisionOpId(target.tenantId, target.userId, targetIds, sourceIds, context.policy),
    tenantId: target.tenantId,
    userId: target.userId,
    targetIds: [...targetIds],
    sourceIds: [...sourceIds],
    requestedBy: context.requestedBy,
    requestedAt: context.now,
    decidedBy: context.policy,
  };
}

/**
 * The LLM-free merge: near-duplicates (oldest first) become one version that cites the turns of all, with
 * the longest text (the newest on a tie) and valid from the newest member's time; every member is closed
 * then and points to it.
 */
export function mergeOp(members: readonly MemoryEntry[], similarity: number, context: OpContext): MemoryOp {
  const sorted = [...members].sort(compareByTime);
  const oldest = sorted[0];
  const newest = sorted.at(-1);
  if (oldest === undefined || newest === undefined || sorted.length < 2) {
    throw new Error('a merge needs at least two memories');
  }
  const chosen = sorted.reduce((best, entry) => (entry.text.length >= best.text.length ? entry : best));
  const ids = sorted.map((entry) => entry.id);
  const base = baseOp(oldest, ids, ids.slice(1), context);
  const version = newVersion(chosen, sorted, {
    opId: base.opId,
    text: chosen.text,
    sourceText: chosen.sourceText,
    validFrom: newest.occurredAt,
    now: context.now,
    promptHash: chosen.pipeline.promptHash,
  });
  return {
    ...base,
    op: 'update',
    replacementIds: [version.id],
    replacements: [version],
    reason: `${sorted.length} near-duplicates (cosine >= ${similarity}, same speaker) merged`,
    validTo: newest.occurredAt,
  };
}

/** The op of an LLM's decision on one case: update (a new version), supersede, or ignore. */
export function decisionOp(
  item: UpdateCase,
  decision: CaseDecision,
  context: OpContext & { readonly promptHash: string | null },
): MemoryOp {
  const { target } = item;
  const sources = item.sources.map((source) => source.memory);
  const newest = [...sources].sort(compareByTime).at(-1) ?? target;
  const base = baseOp(
    target,
    [target.id],
    sources.map((source) => source.id),
    context,
  );
  switch (decision.action) {
    case 'update': {
      const version = newVersion(target, [target, ...sources], {
        opId: base.opId,
        text: decision.text,
        sourceText: joinedSourceText([target, ...sources]),
        validFrom: newest.occurredAt,
        now: context.now,
        promptHash: target.pipeline.promptHash ?? context.promptHash,
      });
      return {
        ...base,
        op: 'update',
        replacementIds: [version.id],
        replacements: [version],
        reason: decision.reason,
        validTo: newest.occurredAt,
      };
    }
    case 'supersede':
      return {
        ...base,
        op: 'supersede',
        replacementIds: [decision.by],
        replacements: [],
        reason: decision.reason,
        validTo: newest.occurredAt,
      };
    case 'ignore':
      return {
        ...base,
        op: 'ignore',
        replacementIds: [],
        replacements: [],
        reason: decision.reason,
        validTo: null,
      };
  }
}
