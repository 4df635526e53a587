import type { ChatRequest } from '../core/ports/chat-model.js';
import type {
  CaseDecision,
  DecideContext,
  UpdateCase,
  UpdateDecider,
} from '../stages/consolidation/decision.js';
import { chatPromptTokens, type LlmCost } from './llm-dry-run.js';

/** One update request that would have been sent (a line of `<out>/consolidation-requests.jsonl`). */
export interface RenderedUpdateRequest {
  readonly userId: string;
  readonly targetId: string;
  readonly sources: number;
  /** Cosine similarity of each source to the target, in the order shown (S1, S2, …). */
  readonly similarities: readonly number[];
  readonly promptTokens: number;
  readonly request: ChatRequest;
}

/**
 * `--consolidate --llm dry-run`: the LLM update decider's first request for each case (update queues, the
 * inverted map and the targets exactly as the LLM policy plans them) is rendered and counted with o200k,
 * per user, and nothing is sent; every case is decided `ignore`, so no memory changes. Repairs are not
 * counted (they depend on answers), nor are the completion tokens.
 */
export class DryRunDecider implements UpdateDecider {
  readonly policy: string;
  readonly promptHash: string;
  private readonly costs = new Map<string, { calls: number; promptTokens: number }>();

  /**
   * @param policy the LLM decider's policy (`llm:<model>@<hash>`); recorded as `dry-run:<policy>`, so the
   *   ignore ops of a dry run never pass for the LLM's answers
   * @param promptHash the LLM decider's prompt hash
   * @param render the request the LLM decider sends first for a case (`updateRequest`)
   * @param write receives every rendered request, in order (e.g. appends it to a file)
   */
  constructor(
    policy: string,
    promptHash: string,
    private readonly render: (item: UpdateCase) => ChatRequest,
    private readonly write: (rendered: RenderedUpdateRequest) => void = () => undefined,
  ) {
    this.policy = `dry-run:${policy}`;
    this.promptHash = promptHash;
  }

  decide(item: UpdateCase, context: DecideContext): Promise<CaseDecision> {
    // The LLM decider answers a case without sources itself, without a call.
    if (item.sources.length === 0)
      return Promise.resolve({ action: 'ignore', reason: 'no newer memories to compare with' });
    const request = this.render(item);
    const promptTokens = chatPromptTokens(request);
    const cost = this.costs.get(context.userId) ?? { calls: 0, promptTokens: 0 };
    cost.calls++;
    cost.promptTokens += promptTokens;
    this.costs.set(context.userId, cost);
    this.write({
      userId: context.userId,
      targetId: item.target.id,
      sources: item.sources.length,
      similarities: item.sources.map((source) => source.similarity),
      promptTokens,
      request,
    });
    return Promise.resolve({
      action: 'ignore',
      reason: 'dry run: the request was counted, nothing was sent',
    });
  }

  /** What each user's update calls would have cost (prompt side). */
  costOf(userId: string): LlmCost {
    const cost = this.costs.get(userId);
    return { calls: cost?.calls ?? 0, promptTokens: cost?.promptTokens ?? 0, completionTokens: 0 };
  }
}
