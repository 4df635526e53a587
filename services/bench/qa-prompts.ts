/**
 * The prompts of the QA benchmark and the parsers of its judges' verdicts (reference §13), as pure
 * functions: the answer prompt over a question's retrieved memories (LongMemEval: LightMem's; LoCoMo:
 * Mem0's), and the judge prompt over the answer (LongMemEval: the official per-question-type yes/no
 * prompts of its evaluate_qa.py; LoCoMo: the generous Mem0/LoCoMo CORRECT/WRONG judge). Written in our
 * own words, keeping every grading rule of the originals.
 */
import { InvalidInputError, LightmemError } from '../core/errors.js';
import type { ChatMessage } from '../core/ports/chat-model.js';
import type { RecallQuestion } from './recall-bench.js';
import { longMemEvalQuestionTypes } from './longmemeval-dataset.js';

export type QaBenchmark = 'locomo' | 'longmemeval';

/** Memories an answer prompt holds by default: LoCoMo top 60 (§13.2), LongMemEval top 20 (§13.1). */
export const defaultAnswerTopK: Readonly<Record<QaBenchmark, number>> = { locomo: 60, longmemeval: 20 };

/** A retrieved memory as a prompt holds it (RetrievedMemory.text). */
export interface PromptLine {
  readonly text: string;
}

function topTexts(memories: readonly PromptLine[], topK: number): string[] {
  if (!Number.isInteger(topK) || topK < 1)
    throw new RangeError(`topK must be a positive integer, got ${topK}`);
  return memories.slice(0, topK).map((memory) => memory.text);
}

/**
 * LongMemEval (§13.1, LightMem's run_lightmem_gpt.py): a helpful-assistant system message, and the question
 * with the time it is asked, then the top-K memories one per line.
 */
export function longMemEvalAnswerMessages(
  question: RecallQuestion,
  memories: readonly PromptLine[],
  topK: number = defaultAnswerTopK.longmemeval,
): ChatMessage[] {
  if (question.askedAt === undefined) {
    throw new InvalidInputError(`question ${question.questionId} has no question time`, 'askedAt');
  }
  return [
    { role: 'system', content: 'You are a helpful assistant.' },
    {
      role: 'user',
      content:
        `Question time: ${question.askedAt} and question: ${question.query}\n` +
        `Please answer the question based on the following memories: ${topTexts(memories, topK).join('\n')}`,
    },
  ];
}

/**
 * LoCoMo (§13.2, Mem0's answer prompt): one system message with the instructions, the top-K memories of
 * both speakers (each line names its time and speaker) and the question.
 */
export function locomoAnswerMessages(
  question: RecallQuestion,
  memories: readonly PromptLine[],
  topK: number = defaultAnswerTopK.locomo,
): ChatMessage[] {
  const content = `You are a memory assistant: you answer questions accurately from the memories of a conversation.

# CONTEXT
Below are memories of both speakers of a conversation between two people. Each memory starts with the time it was recorded, [YYYY-MM-DD HH:MM], and names the speaker it comes from. They may hold what is needed to answer the question.

# INSTRUCTIONS
1. Analyse all the memories, from both speakers, carefully.
2. Pay close attention to the timestamps: they often decide the answer.
3. When the question is about a particular event or fact, look for direct evidence of it in the memories.
4. When memories contradict each other, trust the most recent one.
5. When a memory uses a relative time expression ("last year", "two months ago", "next Friday"), work out the actual date from that memory's timestamp. For example, if a memory recorded on 4 May 2022 says "went to India last year", the trip was in 2021.
6. Always answer with absolute dates, months or years, e.g. "2022" instead of "last year" or "March 2023" instead of "two months ago", counted from the memory's timestamp; do not answer with the relative expression itself.
7. Use only the content of the memories. People named inside a memory are not necessarily the speakers: do not confuse them with the speakers who made the memories.
8. The answer must be short: at most 5-6 words.

# APPROACH (think step by step)
1. First find every memory related to the question.
2. Read their timestamps and contents carefully.
3. Look for explicit dates, times, places or events that answer the question.
4. If the answer needs a calculation (such as resolving a relative time expression), show your work.
5. Give a precise, concise answer based only on the memories.
6. Check that the answer addresses exactly what was asked.
7. Make sure the final answer is specific and holds no vague time reference.

# MEMORIES
${topTexts(memories, topK).join('\n')}

Question: ${question.query}

Answer:`;
  return [{ role: 'system', content }];
}

export function answerMessages(
  benchmark: QaBenchmark,
  question: RecallQuestion,
  memories: readonly PromptLine[],
  topK?: number,
): ChatMessage[] {
  return benchmark === 'locomo'
    ? locomoAnswerMessages(question, memories, topK)
    : longMemEvalAnswerMessages(question, memories, topK);
}

function reference(question: RecallQuestion): string {
  if (question.answer === undefined) {
    throw new InvalidInputError(
      `question ${question.questionId} has no reference answer to judge by`,
      'answer',
    );
  }
  return question.answer;
}

/** The generous Mem0/LoCoMo judge: same topic counts, same date in any format counts; JSON label. */
export function locomoJudgeMessages(question: RecallQuestion, hypothesis: string): ChatMessage[] {
  const content = `Your task is to label an answer to a question as 'CORRECT' or 'WRONG'. You will be given:
    (1) a question (asked by one speaker of a conversation to the other),
    (2) a 'gold' (ground truth) answer,
    (3) a generated answer,
and you will label the generated answer CORRECT or WRONG.

The question asks about something one speaker should know about the other from their earlier conversations. The gold answer is usually a short, concise answer that names the topic asked about, for example:
Question: Do you remember what I got the last time I went to Hawaii?
Gold answer: A shell necklace
The generated answer may be much longer, but be generous in your grading: as long as it touches on the same topic as the gold answer, count it as CORRECT.

For questions about time, the gold answer is a specific date, month, year, etc. The generated answer may be much longer or use relative time references (such as "last Tuesday" or "next month"), but be generous in your grading: as long as it refers to the same date or time period as the gold answer, count it as CORRECT. A different format does not matter (e.g. "May 7th" and "7 May" are the same date): it is CORRECT if it is the same date.

Now the real question:
Question: ${question.query}
Gold answer: ${reference(question)}
Generated answer: ${hypothesis}

First give a short (one sentence) explanation of your reasoning, then finish with CORRECT or WRONG. Do NOT put both CORRECT and WRONG in your response, or the evaluation will break.

Return the label CORRECT or WRONG as JSON, with the key "label": {"label": "CORRECT"} or {"label": "WRONG"}.`;
  return [{ role: 'user', content }];
}

const containsAnswer =
  'I will give you a question, a correct answer, and a response from a model. Answer yes if the response ' +
  'contains the correct answer; otherwise answer no.';
const stepsCount =
  ' If the response is equivalent to the correct answer, or contains all the intermediate steps needed to ' +
  'reach the correct answer, also answer yes. If the response contains only part of the information the ' +
  'answer requires, answer no.';
const isCorrect = 'Is the model response correct? Answer yes or no only.';

/** Whether LongMemEval judges the question with its abstention prompt (ids with `_abs`). */
export function isAbstention(question: RecallQuestion): boolean {
  return question.abstention ?? question.questionId.includes('_abs');
}

/**
 * The official per-type yes/no judge of LongMemEval (evaluate_qa.py), by the question's type (its
 * category); abstention questions (`_abs`) get the unanswerable-question prompt whatever their type.
 */
export function longMemEvalJudgeMessages(question: RecallQuestion, hypothesis: string): ChatMessage[] {
  const type = String(question.category);
  const answer = reference(question);
  const facts = (rules: string, answerLabel = 'Correct Answer') =>
    `${rules}\n\nQuestion: ${question.query}\n\n${answerLabel}: ${answer}\n\nModel Response: ${hypothesis}\n\n`;
  let content: string;
  if (isAbstention(question)) {
    content =
      facts(
        'I will give you an unanswerable question, an explanation, and a response from a model. Answer yes ' +
          'if the model correctly identifies the question as unanswerable. The model may say that the ' +
          'information is incomplete, or that some other information is given but not the information asked for.',
        'Explanation',
      ) + 'Does the model correctly identify the question as unanswerable? Answer yes or no only.';
  } else if (
    type === 'single-session-user' ||
    type === 'single-session-assistant' ||
    type === 'multi-session'
  ) {
    content = facts(containsAnswer + stepsCount) + isCorrect;
  } else if (type === 'temporal-reasoning') {
    content =
      facts(
        containsAnswer +
          stepsCount +
          ' Also, do not penalize off-by-one errors in the number of days: if the question asks for a number ' +
          'of days, weeks, months, etc., and the response is off by one (e.g. 19 days when the answer is 18), ' +
          "the model's response is still correct.",
      ) + isCorrect;
  } else if (type === 'knowledge-update') {
    content =
      facts(
        containsAnswer +
          ' If the response contains some earlier information together with an updated answer, count it as ' +
          'correct as long as the updated answer is the required answer.',
      ) + isCorrect;
  } else if (type === 'single-session-preference') {
    content =
      facts(
        'I will give you a question, a rubric for the desired personalized response, and a response from a ' +
          'model. Answer yes if the response satisfies the desired response; otherwise answer no. The model ' +
          'does not need to reflect every point of the rubric: the response is correct as long as it recalls ' +
          "and uses the user's personal information correctly.",
        'Rubric',
      ) + isCorrect;
  } else {
    throw new InvalidInputError(
      `question ${question.questionId} has LongMemEval question type ${JSON.stringify(type)}, which has no ` +
        `judge prompt (known: ${longMemEvalQuestionTypes.join(', ')})`,
      'category',
    );
  }
  return [{ role: 'user', content }];
}

export function judgeMessages(
  benchmark: QaBenchmark,
  question: RecallQuestion,
  hypothesis: string,
): ChatMessage[] {
  return benchmark === 'locomo'
    ? locomoJudgeMessages(question, hypothesis)
    : longMemEvalJudgeMessages(question, hypothesis);
}

/** Reasoning models served behind OpenAI-compatible endpoints may prefix a `<think>` block. */
function withoutThinking(text: string): string {
  return text.replace(/<think>[\s\S]*?<\/think>/gi, '').trim();
}

function verdictError(judge: string, text: string): LightmemError {
  const shown = text.length > 200 ? `${text.slice(0, 200)}…` : text;
  return new LightmemError('internal', `the ${judge} judge gave no verdict: ${JSON.stringify(shown)}`, {
    retryable: false,
  });
}

/**
 * The LoCoMo judge's verdict: the `label` of the JSON object it answers with (inside a code fence or among
 * other text too); failing that, the last whole-word CORRECT or WRONG of the text (the prompt has the
 * label come last). Throws a non-retryable error when there is neither.
 */
export function parseLocomoLabel(text: string): boolean {
  const body = withoutThinking(text);
  const fenced = /```(?:json)?\s*([\s\S]*?)```/i.exec(body)?.[1];
  for (const candidate of [fenced, body, /\{[\s\S]*?\}/.exec(body)?.[0], /\{[\s\S]*\}/.exec(body)?.[0]]) {
    const label = jsonLabel(candidate);
    if (label === 'CORRECT') return true;
    if (label === 'WRONG') return false;
  }
  const words = [...body.matchAll(/\b(CORRECT|WRONG)\b/g)];
  const last = words.at(-1)?.[1];
  if (last === undefined) throw verdictError('LoCoMo', text);
  return last === 'CORRECT';
}

function jsonLabel(candidate: string | undefined): string | undefined {
  if (candidate === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(candidate.trim());
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || !('label' in value)) return undefined;
  return typeof value.label === 'string' ? value.label.trim().toUpperCase() : undefined;
}

/**
 * A LongMemEval judge's verdict: the first word of its first non-empty line, yes or no (any case,
 * punctuation and markdown ignored); failing that, a whole-word yes or no in that line when only one of
 * them is there. Throws a non-retryable error otherwise.
 */
export function parseYesNo(text: string): boolean {
  const line = withoutThinking(text)
    .split('\n')
    .map((part) => part.trim())
    .find((part) => part !== '');
  if (line !== undefined) {
    const lower = line.toLowerCase();
    const first = /[a-z]+/.exec(lower)?.[0];
    if (first === 'yes') return true;
    if (first === 'no') return false;
    const yes = /\byes\b/.test(lower);
    const no = /\bno\b/.test(lower);
    if (yes !== no) return yes;
  }
  throw verdictError('LongMemEval', text);
}
