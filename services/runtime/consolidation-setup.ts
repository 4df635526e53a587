import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { LightmemConfig } from '../core/config.js';
import type { ChatModel } from '../core/ports/chat-model.js';
import type { Clock } from '../core/ports/clock.js';
import type { EventLog } from '../core/ports/event-log.js';
import type { LlmLedger } from '../core/ports/llm-ledger.js';
import type { Logger } from '../core/ports/logger.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import { LightmemError } from '../core/errors.js';
import { LedgeredChat } from '../stages/llm/ledgered-chat.js';
import type { UpdateDecider } from '../stages/consolidation/decision.js';
import { LlmUpdateDecider } from '../stages/consolidation/llm/llm-update-decider.js';
import {
  consolidationPromptNames,
  consolidationPrompts,
  type ConsolidationPromptName,
} from '../stages/consolidation/llm/prompts.generated.js';
import type { ConsolidationDeps, ConsolidationSettings } from '../../workflows/consolidation/activities.js';
import type { RunLimits } from '../../workflows/consolidation/activity-types.js';
import { configuredChatModel, wantsLlmExtractor, type Env } from './extractor-setup.js';
import { meteredLedger } from '../telemetry/metered-ledger.js';
import { tracedChat } from '../telemetry/traced-chat.js';

/** Who decides: the LLM when asked for (or `auto` with the LLM extractor on), else the LLM-free policy. */
export function consolidationPolicy(config: LightmemConfig): 'llm' | 'near-duplicate' {
  const { policy } = config.consolidation;
  if (policy === 'llm' && config.llm.baseUrl === undefined) {
    throw new LightmemError(
      'config_invalid',
      'consolidation.policy is llm but no endpoint is configured: set llm.baseUrl (or LIGHTMEM_LLM_BASE_URL)',
      { field: 'llm.baseUrl' },
    );
  }
  if (policy === 'auto') return wantsLlmExtractor(config) ? 'llm' : 'near-duplicate';
  return policy;
}

/** The update prompt: a shipped one by name, or a file of the user's. */
export function updatePrompt(name: string): { name: string; text: string } {
  if ((consolidationPromptNames as readonly string[]).includes(name)) {
    return { name, text: consolidationPrompts[name as ConsolidationPromptName] };
  }
  const path = resolve(name);
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  if (text.trim() === '') {
    throw new LightmemError(
      'config_invalid',
      `consolidation.prompt is ${JSON.stringify(name)}: neither a shipped prompt (${consolidationPromptNames.join(', ')}) nor a non-empty file`,
      { field: 'consolidation.prompt' },
    );
  }
  return { name: `file:${path}`, text };
}

/** The LLM decider as configured, its calls in the ledger; null for the LLM-free policy. */
export function configuredDecider(
  config: LightmemConfig,
  env: Env,
  clock: Clock,
  ledger: LlmLedger,
  chat?: ChatModel,
): UpdateDecider | null {
  if (consolidationPolicy(config) !== 'llm') return null;
  const prompt = updatePrompt(config.consolidation.prompt);
  return new LlmUpdateDecider(
    new LedgeredChat({
      chat: tracedChat(chat ?? configuredChatModel(config, env)),
      ledger: meteredLedger(ledger),
      stage: 'consolidator',
      concurrency: config.llm.concurrency,
      clock,
    }),
    {
      promptName: prompt.name,
      prompt: prompt.text,
      maxTokens: config.consolidation.maxAnswerTokens,
      temperature: config.consolidation.temperature,
    },
  );
}

export function consolidationSettings(config: LightmemConfig): ConsolidationSettings {
  const c = config.consolidation;
  return {
    topK: c.topK,
    keepTopN: c.keepTopN,
    threshold: c.threshold,
    nearDuplicate: c.nearDuplicate,
    maxSourcesPerRun: c.maxSourcesPerRun,
    decideConcurrency: config.llm.concurrency,
    applyTimeoutMs: 5 * 60_000,
    applyPollMs: 100,
  };
}

export function runLimits(config: LightmemConfig): RunLimits {
  return { chunkSize: config.consolidation.chunkSize, parallelism: config.consolidation.parallelism };
}

/** Everything the consolidation activities need but the context of the activity running now. */
export function consolidationDeps(parts: {
  readonly config: LightmemConfig;
  readonly store: MemoryStore;
  readonly log: EventLog;
  readonly embedderId: string | null;
  readonly decider: UpdateDecider | null;
  readonly clock: Clock;
  readonly logger: Logger;
}): Omit<ConsolidationDeps, 'context'> {
  return {
    store: parts.store,
    log: parts.log,
    decider: parts.decider,
    embedderId: parts.embedderId,
    clock: parts.clock,
    logger: parts.logger,
    settings: consolidationSettings(parts.config),
  };
}
