/**
 * The `--qa` step of the recall benchmarks: answer every question from its retrieved memories with the
 * configured OpenAI-compatible endpoint and grade the answer with the benchmark's judge (reference §13).
 * `--dry-run` builds and counts every prompt and sends nothing.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInputError } from '../core/errors.js';
import type { LightmemConfig } from '../core/config.js';
import type { ChatCompletion, ChatModel } from '../core/ports/chat-model.js';
import { configuredChatModel } from '../runtime/extractor-setup.js';
import { runQa, type QaRun } from '../bench/qa-bench.js';
import type { QaBenchmark } from '../bench/qa-prompts.js';
import type { Retrieval } from '../bench/recall-bench.js';
import { ProgressBar } from './progress.js';

export interface QaStepOptions {
  readonly benchmark: QaBenchmark;
  readonly config: LightmemConfig;
  readonly env: NodeJS.ProcessEnv;
  readonly dryRun: boolean;
  readonly concurrency: number;
  readonly out: string;
  readonly quiet: boolean;
}

/** A model for a dry run: never called. */
const unsent = (model: string): ChatModel => ({
  model,
  complete: (): Promise<ChatCompletion> =>
    Promise.reject(new InvalidInputError('a dry run sends nothing', 'dry-run')),
});

/** The endpoint's chat models, or a clear error saying how to configure one. */
function chatModels(options: QaStepOptions): { answerer: ChatModel; judge: ChatModel } {
  const { llm } = options.config;
  if (options.dryRun) return { answerer: unsent(llm.model), judge: unsent(llm.judgeModel) };
  if (llm.baseUrl === undefined)
    throw new InvalidInputError(
      '--qa needs an OpenAI-compatible endpoint: set LIGHTMEM_LLM_BASE_URL (or OPENAI_BASE_URL, or llm.baseUrl ' +
        'in the config file) and OPENAI_API_KEY; --dry-run counts the prompts without one',
      'llm.baseUrl',
    );
  const make = (model: string): ChatModel => configuredChatModel(options.config, options.env, model);
  return { answerer: make(llm.model), judge: make(llm.judgeModel) };
}

/** Checks the endpoint settings before the (long) ingest starts. */
export function checkQaSettings(options: QaStepOptions): void {
  chatModels(options);
}

export interface QaSummary {
  readonly dryRun: boolean;
  readonly answerModel: string;
  readonly judgeModel: string;
  readonly topK: number;
  readonly accuracy: number;
  readonly correct: number;
  readonly total: number;
  readonly byCategory: Readonly<Record<string, number>>;
  readonly calls: number;
  readonly plannedCalls: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly errors: number;
  readonly seconds: number;
}

export function qaSummary(run: QaRun): QaSummary {
  return {
    dryRun: run.dryRun,
    answerModel: run.answerModel,
    judgeModel: run.judgeModel,
    topK: run.topK,
    accuracy: run.accuracy.overall.accuracy,
    correct: run.accuracy.overall.correct,
    total: run.accuracy.overall.total,
    byCategory: Object.fromEntries(
      Object.entries(run.accuracy.byCategory).map(([category, a]) => [category, a.accuracy]),
    ),
    calls: run.calls,
    plannedCalls: run.plannedCalls,
    promptTokens: run.promptTokens,
    completionTokens: run.completionTokens,
    errors: run.errors,
    seconds: run.seconds,
  };
}

/** Answers and grades, writes `<out>/qa.jsonl`, and returns the summary for the report. */
export async function runQaStep(
  retrievals: readonly Retrieval[],
  options: QaStepOptions,
): Promise<QaSummary> {
  const { answerer, judge } = chatModels(options);
  const progress = new ProgressBar(options.dryRun ? 'counting' : 'answering', process.stderr, options.quiet);
  const run = await runQa(retrievals, {
    benchmark: options.benchmark,
    answerer,
    judge,
    dryRun: options.dryRun,
    concurrency: options.concurrency,
    onProgress: (done, total) => progress.update(done, total, 'questions'),
  });
  progress.finish();
  const lines = run.perQuestion.map((q) =>
    JSON.stringify({
      question_id: q.questionId,
      category: q.category,
      answer: q.answer,
      reference: q.reference,
      correct: q.correct,
      ...(q.error === undefined ? {} : { error: q.error }),
    }),
  );
  await writeFile(join(options.out, 'qa.jsonl'), lines.map((line) => `${line}\n`).join(''));
  return qaSummary(run);
}

/** The QA lines of the terminal summary. */
export function qaSummaryText(summary: QaSummary): string {
  if (summary.dryRun)
    return (
      `QA dry run: ${summary.plannedCalls} calls planned (${summary.answerModel} answers, ${summary.judgeModel} judges), ` +
      `~${summary.promptTokens} prompt tokens; nothing sent`
    );
  const byCategory = Object.entries(summary.byCategory)
    .map(([category, accuracy]) => `${category} ${(accuracy * 100).toFixed(1)}`)
    .join(', ');
  return (
    `QA accuracy ${(summary.accuracy * 100).toFixed(1)}% (${summary.correct}/${summary.total}; ${byCategory}); ` +
    `${summary.calls} calls, ${summary.promptTokens} prompt + ${summary.completionTokens} completion tokens, ` +
    `${summary.errors} errors, ${summary.seconds} s (${summary.answerModel} answers, ${summary.judgeModel} judges)`
  );
}
