/**
 * The `--qa` run of a recall benchmark: each question with a reference answer is answered by a chat model
 * from its retrieved memories, and the answer is graded by a judge model with the benchmark's own judge
 * protocol (reference §13); accuracy overall and per category. A question whose answer or verdict cannot
 * be had (after the client's retries) is recorded with its error and counted wrong, as LightMem counts the
 * samples it skips. Calls run on a bounded pool of workers, one question (answer, then judge) at a time
 * each. A dry run builds every prompt and counts its tokens without sending anything.
 */
import { errorMessage, LightmemError } from '../core/errors.js';
import type { ChatMessage, ChatModel, ChatRequest } from '../core/ports/chat-model.js';
import { approxTokenCount } from '../core/text/token-count.js';
import {
  answerMessages,
  defaultAnswerTopK,
  judgeMessages,
  parseLocomoLabel,
  parseYesNo,
  type QaBenchmark,
} from './qa-prompts.js';
import type { RecallQuestion, Retrieval } from './recall-bench.js';

export interface QaOptions {
  readonly benchmark: QaBenchmark;
  readonly answerer: ChatModel;
  readonly judge: ChatModel;
  /** Memories per answer prompt; default LoCoMo 60, LongMemEval 20. */
  readonly topK?: number | undefined;
  /** Questions in flight at once (each has at most one call in flight); default 4. */
  readonly concurrency?: number | undefined;
  /** Build and count every prompt, send nothing. */
  readonly dryRun?: boolean | undefined;
  readonly onProgress?: ((done: number, total: number) => void) | undefined;
}

export interface QaQuestionResult {
  readonly questionId: string;
  readonly category: number | string;
  /** The answer model's answer (the hypothesis); '' when it failed or in a dry run. */
  readonly answer: string;
  /** The dataset's reference answer. */
  readonly reference: string;
  /** The judge's verdict; null when there is none (error, dry run), which counts as wrong. */
  readonly correct: boolean | null;
  readonly error?: string | undefined;
  /** Answer and judge calls together (a dry run: the prompts' approximate tokens). */
  readonly promptTokens: number;
  readonly completionTokens: number;
}

export interface QaAccuracy {
  readonly correct: number;
  readonly total: number;
  /** correct / total; 0 when there are no questions. */
  readonly accuracy: number;
}

export interface QaRun {
  readonly benchmark: QaBenchmark;
  readonly dryRun: boolean;
  readonly topK: number;
  /** In the order of the retrievals. */
  readonly perQuestion: readonly QaQuestionResult[];
  readonly accuracy: {
    readonly overall: QaAccuracy;
    readonly byCategory: Readonly<Record<string, QaAccuracy>>;
  };
  /** Chat calls made (answer and judge; the client's own retries not counted). */
  readonly calls: number;
  /** Chat calls the run needs: two per answered question. */
  readonly plannedCalls: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly answerModel: string;
  readonly judgeModel: string;
  readonly seconds: number;
  /** Questions with an error (counted wrong). */
  readonly errors: number;
}

const defaultConcurrency = 4;

/** Answer-call settings: temperature 0 (both), LongMemEval top_p 0.8 and max_tokens 2000 (§13.1). */
function answerRequest(benchmark: QaBenchmark, messages: ChatMessage[]): ChatRequest {
  return benchmark === 'longmemeval'
    ? { messages, temperature: 0, topP: 0.8, maxTokens: 2000 }
    : { messages, temperature: 0 };
}

/** Judge-call settings: temperature 0; the LoCoMo judge answers with a JSON object. */
function judgeRequest(benchmark: QaBenchmark, messages: ChatMessage[]): ChatRequest {
  return benchmark === 'locomo'
    ? { messages, temperature: 0, responseFormat: 'json_object' }
    : { messages, temperature: 0 };
}

/**
 * Whether the QA run answers a question. It needs a reference answer (LoCoMo category 5 has none). LoCoMo
 * grades its scored categories (1–4, §13.2) only. LongMemEval grades every question (§13.1: accuracy over
 * all 500), abstention and assistant-side ones included, whatever `scored` says: there `scored` is about
 * evidence recall (gold turns on the user side), not about answers.
 */
export function isAnswerable(question: RecallQuestion, benchmark: QaBenchmark): boolean {
  if (question.answer === undefined) return false;
  return benchmark === 'longmemeval' || question.scored;
}

interface Planned {
  readonly retrieval: Retrieval;
  readonly reference: string;
  readonly answer: ChatMessage[];
}

export async function runQa(retrievals: readonly Retrieval[], options: QaOptions): Promise<QaRun> {
  const started = performance.now();
  const { benchmark, answerer, judge } = options;
  const topK = options.topK ?? defaultAnswerTopK[benchmark];
  const concurrency = options.concurrency ?? defaultConcurrency;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }
  // Every prompt is built before anything is sent: a question the prompts cannot be built for (no
  // question time, an unknown LongMemEval type) fails the run at once, not after hundreds of calls.
  const planned: Planned[] = retrievals.flatMap((retrieval) => {
    const { question } = retrieval;
    if (!isAnswerable(question, benchmark) || question.answer === undefined) return [];
    judgeMessages(benchmark, question, '');
    return [
      {
        retrieval,
        reference: question.answer,
        answer: answerMessages(benchmark, question, retrieval.retrieved, topK),
      },
    ];
  });

  let calls = 0;
  let done = 0;
  const results: QaQuestionResult[] = new Array<QaQuestionResult>(planned.length);

  const dryRunOne = (item: Planned): QaQuestionResult => ({
    ...base(item),
    answer: '',
    correct: null,
    promptTokens:
      messageTokens(item.answer) + messageTokens(judgeMessages(benchmark, item.retrieval.question, '')),
    completionTokens: 0,
  });

  const askOne = async (item: Planned): Promise<QaQuestionResult> => {
    const { question } = item.retrieval;
    let answer = '';
    let promptTokens = 0;
    let completionTokens = 0;
    let step = 'answer';
    try {
      calls++;
      const answered = await answerer.complete(answerRequest(benchmark, item.answer));
      answer = answered.text.trim();
      promptTokens += answered.promptTokens;
      completionTokens += answered.completionTokens;
      step = 'judge';
      calls++;
      const judged = await judge.complete(
        judgeRequest(benchmark, judgeMessages(benchmark, question, answer)),
      );
      promptTokens += judged.promptTokens;
      completionTokens += judged.completionTokens;
      const correct = benchmark === 'locomo' ? parseLocomoLabel(judged.text) : parseYesNo(judged.text);
      return { ...base(item), answer, correct, promptTokens, completionTokens };
    } catch (error) {
      // A refused key, model or endpoint fails every question the same way: stop instead of grading 0%.
      if (error instanceof LightmemError && error.code === 'config_invalid') throw error;
      return {
        ...base(item),
        answer,
        correct: null,
        error: `${step}: ${errorMessage(error)}`,
        promptTokens,
        completionTokens,
      };
    }
  };

  let next = 0;
  const worker = async () => {
    while (next < planned.length) {
      const index = next++;
      const item = planned[index];
      if (item === undefined) break;
      results[index] = options.dryRun === true ? dryRunOne(item) : await askOne(item);
      done++;
      options.onProgress?.(done, planned.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, planned.length) }, worker));

  return {
    benchmark,
    dryRun: options.dryRun === true,
    topK,
    perQuestion: results,
    accuracy: qaAccuracy(results),
    calls,
    plannedCalls: 2 * planned.length,
    promptTokens: results.reduce((sum, result) => sum + result.promptTokens, 0),
    completionTokens: results.reduce((sum, result) => sum + result.completionTokens, 0),
    answerModel: answerer.model,
    judgeModel: judge.model,
    seconds: (performance.now() - started) / 1000,
    errors: results.filter((result) => result.error !== undefined).length,
  };
}

function base(item: Planned): Pick<QaQuestionResult, 'questionId' | 'category' | 'reference'> {
  const { question } = item.retrieval;
  return { questionId: question.questionId, category: question.category, reference: item.reference };
}

function messageTokens(messages: readonly ChatMessage[]): number {
  return messages.reduce((sum, message) => sum + approxTokenCount(message.content), 0);
}

/** Accuracy overall and per category (keyed by the category as a string); no verdict counts as wrong. */
export function qaAccuracy(results: readonly Pick<QaQuestionResult, 'category' | 'correct'>[]): {
  overall: QaAccuracy;
  byCategory: Record<string, QaAccuracy>;
} {
  const tally = (subset: readonly Pick<QaQuestionResult, 'correct'>[]): QaAccuracy => {
    const correct = subset.filter((result) => result.correct === true).length;
    return { correct, total: subset.length, accuracy: subset.length === 0 ? 0 : correct / subset.length };
  };
  const groups = new Map<string, Pick<QaQuestionResult, 'correct'>[]>();
  for (const result of results) {
    const key = String(result.category);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [result]);
    else group.push(result);
  }
  const byCategory: Record<string, QaAccuracy> = {};
  for (const key of [...groups.keys()].sort(compareCategories))
    byCategory[key] = tally(groups.get(key) ?? []);
  return { overall: tally(results), byCategory };
}

/** Numeric categories in numeric order, then named ones alphabetically. */
function compareCategories(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  if (Number.isFinite(na)) return -1;
  if (Number.isFinite(nb)) return 1;
  return a.localeCompare(b);
}
