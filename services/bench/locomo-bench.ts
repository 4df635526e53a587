/**
 * LoCoMo as recall cases: each sample is one case, ingested by the normal `locomo` loader into its own
 * user (the loader's userId is the sample id) and questioned in that user's scope only.
 */
import { LightmemError } from '../core/errors.js';
import { locomoSampleItems, type InputItem } from '../ingest/index.js';
import { isScoredLocomoCategory, scoredLocomoCategories, type LocomoSample } from './locomo-dataset.js';
import type { RecallCase } from './recall-bench.js';

export function locomoCases(samples: readonly LocomoSample[], tenantId: string): RecallCase[] {
  return samples.map((sample) => {
    const scope = { tenantId, userId: sample.sampleId };
    return {
      caseId: sample.sampleId,
      scope,
      items: () =>
        inScope(locomoSampleItems(sample.value, sample.index, tenantId, sample.text), scope, sample.sampleId),
      questions: sample.questions.map((q) => ({
        questionId: q.questionId,
        category: q.category,
        query: q.question,
        gold: q.gold,
        scored: isScoredLocomoCategory(q.category),
      })),
    };
  });
}

/** Guards the isolation the benchmark relies on: every event of a case lands in the case's scope. */
function* inScope(
  items: Iterable<InputItem>,
  scope: { readonly tenantId: string; readonly userId: string },
  caseId: string,
): Generator<InputItem> {
  for (const item of items) {
    if (item.result.ok) {
      const { tenantId, userId } = item.result.event;
      if (tenantId !== scope.tenantId || userId !== scope.userId) {
        throw new LightmemError(
          'internal',
          `sample ${caseId}: the loader put ${item.label} in ${tenantId}/${userId}, not the sample's scope ${scope.tenantId}/${scope.userId}`,
        );
      }
    }
    yield item;
  }
}

/** What the evidence parser recovered and dropped, for the report. */
export function locomoEvidenceNotes(samples: readonly LocomoSample[]): Record<string, unknown> {
  const questions = samples.flatMap((s) => s.questions);
  const inScoredCategories = questions.filter((q) => scoredLocomoCategories.includes(q.category));
  return {
    turns: samples.reduce((sum, s) => sum + s.turnIds.length, 0),
    goldIds: questions.reduce((sum, q) => sum + q.gold.length, 0),
    droppedUnknownIds: questions.flatMap((q) =>
      q.unknownEvidence.map((id) => ({ questionId: q.questionId, id })),
    ),
    droppedUnparseable: questions.flatMap((q) =>
      q.unparseableEvidence.map((text) => ({ questionId: q.questionId, text })),
    ),
    scoredCategoryQuestionsWithoutGold: inScoredCategories
      .filter((q) => q.gold.length === 0)
      .map((q) => q.questionId),
  };
}
