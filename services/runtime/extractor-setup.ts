import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { LightmemConfig } from '../core/config.js';
import type { ChatModel } from '../core/ports/chat-model.js';
import type { Clock } from '../core/ports/clock.js';
import type { Extractor } from '../core/ports/extractor.js';
import type { LlmLedger } from '../core/ports/llm-ledger.js';
import { LightmemError } from '../core/errors.js';
import { OpenAiChat } from '../adapters/openai/openai-chat.js';
import { SqliteLlmLedger } from '../adapters/sqlite/sqlite-llm-ledger.js';
import { ExtractiveExtractor } from '../stages/summarizer/extractive-extractor.js';
import { LlmExtractor } from '../stages/summarizer/llm/llm-extractor.js';
import { LedgeredChat } from '../stages/llm/ledgered-chat.js';
import { TokenBudget } from '../stages/llm/token-budget.js';
import {
  extractionPromptNames,
  extractionPrompts,
  type ExtractionPromptName,
} from '../stages/summarizer/llm/prompts.generated.js';
import { meteredLedger } from '../telemetry/metered-ledger.js';
import { tracedChat } from '../telemetry/traced-chat.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** The endpoint's key: LIGHTMEM_LLM_API_KEY, else OPENAI_API_KEY; local servers take any, so `none`. */
export function llmApiKey(env: Env): string {
  const key = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  return key('LIGHTMEM_LLM_API_KEY') ?? key('OPENAI_API_KEY') ?? 'none';
}

/** A chat model on the configured endpoint (`llm.baseUrl`, which must be set). */
export function configuredChatModel(config: LightmemConfig, env: Env, model = config.llm.model): ChatModel {
  return new OpenAiChat({
    baseUrl: config.llm.baseUrl ?? '',
    apiKey: llmApiKey(env),
    model,
    timeoutMs: config.llm.timeoutMs,
    maxRetries: config.llm.maxRetries,
    structuredOutput: config.llm.structuredOutput,
  });
}

/** The extraction prompt: a shipped one by name, or a file of the user's. */
export function extractionPrompt(name: string): { name: string; text: string } {
  if ((extractionPromptNames as readonly string[]).includes(name)) {
    return { name, text: extractionPrompts[name as ExtractionPromptName] };
  }
  const path = resolve(name);
  if (!existsSync(path)) {
    throw new LightmemError(
      'config_invalid',
      `summarizer.prompt is ${JSON.stringify(name)}: neither a shipped prompt (${extractionPromptNames.join(', ')}) nor a file`,
      { field: 'summarizer.prompt' },
    );
  }
  const text = readFileSync(path, 'utf8');
  if (text.trim() === '') {
    throw new LightmemError('config_invalid', `the prompt file ${path} is empty`, {
      field: 'summarizer.prompt',
    });
  }
  return { name: `file:${path}`, text };
}

/** What the LLM extractor sends, as configured (the prompt read and checked). */
export function extractionSettings(config: LightmemConfig) {
  const prompt = extractionPrompt(config.summarizer.prompt);
  return {
    memorizeRoles: new Set(config.summarizer.memorizeRoles),
    promptName: prompt.name,
    prompt: prompt.text,
    maxTokens: config.summarizer.maxAnswerTokens,
    temperature: config.summarizer.temperature,
  } as const;
}

export interface ExtractorChoice {
  readonly extractor: Extractor;
  /** What runs, for the start-up line: `llm gpt-4o-mini at https://… (prompt general)` or `extractive`. */
  readonly description: string;
}

/** Whether the configuration asks for the LLM extractor (`auto` with an endpoint, or `llm`). */
export function wantsLlmExtractor(config: LightmemConfig): boolean {
  const choice = config.summarizer.extractor;
  if (choice === 'llm' && config.llm.baseUrl === undefined) {
    throw new LightmemError(
      'config_invalid',
      'summarizer.extractor is llm but no endpoint is configured: set llm.baseUrl (or LIGHTMEM_LLM_BASE_URL)',
      { field: 'llm.baseUrl' },
    );
  }
  return choice === 'llm' || (choice === 'auto' && config.llm.baseUrl !== undefined);
}

/**
 * The summarizer's extractor as configured: the extractive one, or the LLM one over the configured
 * endpoint with its calls recorded in `ledger`.
 */
export function configuredExtractor(
  config: LightmemConfig,
  env: Env,
  clock: Clock,
  ledger: LlmLedger,
  chat?: ChatModel,
): ExtractorChoice {
  const extractive = new ExtractiveExtractor({
    memorizeRoles: new Set(config.summarizer.memorizeRoles),
    granularity: config.summarizer.granularity,
    splitWords: config.summarizer.splitWords,
  });
  if (!wantsLlmExtractor(config)) return { extractor: extractive, description: 'extractive' };
  const model = chat ?? configuredChatModel(config, env);
  const settings = extractionSettings(config);
  const { budget } = config.llm;
  const limited =
    budget.tokensPerMinute !== null ||
    budget.tokensPerDay !== null ||
    Object.values(budget.tenants).some((t) => t.tokensPerMinute != null || t.tokensPerDay != null);
  const extractor = new LlmExtractor(
    new LedgeredChat({
      chat: tracedChat(model),
      ledger: meteredLedger(ledger),
      stage: 'summarizer',
      concurrency: config.llm.concurrency,
      clock,
    }),
    {
      ...settings,
      onMalformed: config.summarizer.onMalformed,
      fallback: extractive,
      overBudget: budget.overBudget,
      budget: limited
        ? new TokenBudget(ledger, clock, (tenantId) => {
            const own = budget.tenants[tenantId];
            return {
              tokensPerMinute:
                own?.tokensPerMinute === undefined ? budget.tokensPerMinute : own.tokensPerMinute,
              tokensPerDay: own?.tokensPerDay === undefined ? budget.tokensPerDay : own.tokensPerDay,
            };
          })
        : undefined,
    },
  );
  const where = model instanceof OpenAiChat ? ` at ${model.endpoint}` : '';
  return {
    extractor,
    description: `llm ${model.model}${where} (prompt ${settings.promptName}, ${extractor.promptHash})`,
  };
}

/** The embedded cost ledger of a data dir (`ledger.db`), as configured. */
export function openLedger(config: LightmemConfig, file: string): SqliteLlmLedger {
  return SqliteLlmLedger.open(file, {
    answerRetentionMs: config.llm.answerRetentionDays * 86_400_000,
    busyTimeoutMs: config.sqlite.busyTimeoutMs,
  });
}
