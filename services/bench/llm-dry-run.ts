import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { ChatRequest } from '../core/ports/chat-model.js';
import type { ExtractOptions, ExtractionResult, Extractor } from '../core/ports/extractor.js';
import type { TopicSegment } from '../core/model/generated.js';

/** Calls and tokens of one case (a LoCoMo conversation, a LongMemEval question: one user each). */
export interface LlmCost {
  readonly calls: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/**
 * Prompt tokens of a chat request as OpenAI's chat format counts them with o200k (LightMem's tokenizer,
 * reference §6.1): each message's content plus 3 tokens of framing per message, plus 3 priming the reply.
 */
export function chatPromptTokens(request: ChatRequest): number {
  return request.messages.reduce((sum, message) => sum + countTokens(message.content) + 3, 3);
}

/**
 * `--llm dry-run`: the memories come from the configured (extractive) extractor, while every request the
 * LLM extractor would send for the same batch is rendered and counted, per user, and nothing is sent.
 * Repairs are not counted (they depend on answers).
 */
export class DryRunExtractor implements Extractor {
  readonly version: string;
  readonly promptHash: string | null;
  private readonly costs = new Map<string, { calls: number; promptTokens: number }>();
  /** Every request that would have been sent, in order (written to `<out>/llm-requests.jsonl`). */
  readonly rendered: {
    readonly userId: string;
    readonly promptTokens: number;
    readonly request: ChatRequest;
  }[] = [];

  constructor(
    private readonly inner: Extractor,
    private readonly render: (batch: readonly TopicSegment[]) => {
      request: ChatRequest;
      turns: readonly unknown[];
    },
  ) {
    this.version = inner.version;
    this.promptHash = inner.promptHash;
  }

  extract(batch: readonly TopicSegment[], options?: ExtractOptions): Promise<ExtractionResult> {
    const [first] = batch;
    const { request, turns } = this.render(batch);
    if (first !== undefined && turns.length > 0) {
      const cost = this.costs.get(first.userId) ?? { calls: 0, promptTokens: 0 };
      const promptTokens = chatPromptTokens(request);
      cost.calls++;
      cost.promptTokens += promptTokens;
      this.rendered.push({ userId: first.userId, promptTokens, request });
      this.costs.set(first.userId, cost);
    }
    return this.inner.extract(batch, options);
  }

  /** What each user's batches would have cost. */
  costOf(userId: string): LlmCost {
    const cost = this.costs.get(userId);
    return { calls: cost?.calls ?? 0, promptTokens: cost?.promptTokens ?? 0, completionTokens: 0 };
  }
}
