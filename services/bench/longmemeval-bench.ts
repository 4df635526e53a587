/**
 * LongMemEval as recall cases: each question is one case, its haystack ingested by the normal
 * `longmemeval` loader into its own user (the loader's userId is the question id) and the question asked
 * in that user's scope only. Cases are produced one at a time, as the file is read.
 */
import { longMemEvalQuestionItems, longMemEvalSourceId } from '../ingest/index.js';
import { inCaseScope } from './case-scope.js';
import { isScoredLongMemEvalQuestion, type LongMemEvalQuestion } from './longmemeval-dataset.js';
import type { RecallCase } from './recall-bench.js';

export async function* longMemEvalCases(
  questions: AsyncIterable<LongMemEvalQuestion>,
  tenantId: string,
  onQuestion?: (question: LongMemEvalQuestion) => void,
): AsyncGenerator<RecallCase> {
  for await (const question of questions) {
    onQuestion?.(question);
    const scope = { tenantId, userId: question.questionId };
    yield {
      caseId: question.questionId,
      scope,
      items: () =>
        inCaseScope(
          longMemEvalQuestionItems(question.value, question.index, tenantId, question.text),
          scope,
          question.questionId,
        ),
      // A repeated haystack session's turns carry `#n`; the dataset's ids do not.
      sourceId: longMemEvalSourceId,
      questions: [
        {
          questionId: question.questionId,
          category: question.questionType,
          query: question.question,
          gold: question.gold,
          scored: isScoredLongMemEvalQuestion(question),
          answer: question.answer,
          askedAt: question.questionDate,
          abstention: question.abstention,
        },
      ],
    };
  }
}

/** What the run's questions hold, for the report. */
export interface LongMemEvalNotes {
  questions: number;
  turns: number;
  abstention: number;
  /** Non-abstention questions whose gold is on the assistant side only (asked, not scored). */
  assistantGoldOnly: string[];
}

export function longMemEvalNotes(): { notes: LongMemEvalNotes; add: (q: LongMemEvalQuestion) => void } {
  const notes: LongMemEvalNotes = { questions: 0, turns: 0, abstention: 0, assistantGoldOnly: [] };
  return {
    notes,
    add: (q) => {
      notes.questions++;
      notes.turns += q.turns;
      if (q.abstention) notes.abstention++;
      else if (q.gold.length === 0) notes.assistantGoldOnly.push(q.questionId);
    },
  };
}
