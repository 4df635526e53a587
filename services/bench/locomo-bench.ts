/**
 * LoCoMo as recall cases: each sample is one case, ingested by the normal `locomo` loader into its own
 * user (the loader's userId is the sample id) and questioned in that user's scope only.
 */
import { locomoSampleItems } from '../ingest/index.js';
import { inCaseScope } from './case-scope.js';
import { isScoredLocomoCategory, scoredLocomoCategories, type LocomoSample } from './locomo-dataset.js';
import type { RecallCase } from './recall-bench.js';

export function locomoCases(samples: readonly LocomoSample[], tenantId: string): RecallCase[] {
  return samples.map((sample) => {
    const scope = { tenantId, userId: sample.sampleId };
    return {
      caseId: sample.sampleId,
      scope,
      items: () =>
        inCaseScope(
          locomoSampleItems(sample.value, sample.index, tenantId, sample.text),
          scope,
          sample.sampleId,
        ),
      questions: sample.questions.map((q) => ({
        questionId: q.questionId,
        category: q.category,
        query: q.question,
        gold: q.gold,
        scored: isScoredLocomoCategory(q.category),
        answer: q.answer,
      })),
    };
  });
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
