import { createHash, randomUUID } from 'node:crypto';
import type { ChatCompletion, ChatModel, ChatRequest } from '../../core/ports/chat-model.js';
import type { LlmCallOutcome, LlmLedger } from '../../core/ports/llm-ledger.js';
import type { Clock } from '../../core/ports/clock.js';
import { ConcurrencyLimit } from '../../core/concurrency-limit.js';
import { LightmemError, errorMessage } from '../../core/errors.js';

export interface CallContext {
  readonly tenantId: string;
  readonly userId: string;
  readonly conversationId: string;
  /** What the call is for (`extract`, `repair`). */
  readonly purpose: string;
  readonly promptHash: string | null;
  /** The trace the call belongs to (W3C traceparent): the call's span is its child. */
  readonly traceContext?: string | undefined;
}

/** The caller's verdict on an answer, with what it made of it. */
export interface Judged<R> {
  readonly outcome: Exclude<LlmCallOutcome, 'failed' | 'reused'>;
  /** Why it is not `ok` (recorded in the ledger; no turn text). */
  readonly error: string | null;
  readonly value: R;
}

export interface LedgeredChatOptions {
  readonly chat: ChatModel;
  /** Where calls are recorded and earlier answers found (the cost ledger, or a view of it). */
  readonly ledger: Pick<LlmLedger, 'answerOf' | 'record'>;
  /** The stage the calls are made for (recorded). */
  readonly stage: string;
  /** Calls in flight at once in this process. */
  readonly concurrency: number;
  readonly clock: Clock;
}

/** The hash of everything that decides an answer: the same request is the same hash. */
export function requestHash(model: string, request: ChatRequest): string {
  const canonical = JSON.stringify({
    model,
    messages: request.messages.map((m) => [m.role, m.content]),
    temperature: request.temperature ?? null,
    topP: request.topP ?? null,
    maxTokens: request.maxTokens ?? null,
    responseFormat: request.responseFormat ?? null,
    jsonSchema: request.jsonSchema ?? null,
  });
  return createHash('sha256').update(canonical).digest('hex');
}

/**
 * A ChatModel with a cost ledger in front: every call is recorded (tenant, stage, model, tokens, latency,
 * outcome) before its result is used, and a request whose answer is already recorded (a batch redone after
 * a crash, a replay with the same prompt and model) is answered from the ledger instead of sent again. So a
 * committed batch is never paid for twice, and a crash costs at most the calls that were in flight.
 */
export class LedgeredChat {
  readonly model: string;
  private readonly limit: ConcurrencyLimit;

  constructor(private readonly options: LedgeredChatOptions) {
    this.model = options.chat.model;
    this.limit = new ConcurrencyLimit(options.concurrency);
  }

  async call<R>(
    request: ChatRequest,
    context: CallContext,
    judge: (completion: ChatCompletion) => Judged<R>,
  ): Promise<R> {
    const { ledger, clock } = this.options;
    const hash = requestHash(this.model, request);
    const base = {
      requestHash: hash,
      tenantId: context.tenantId,
      userId: context.userId,
      conversationId: context.conversationId,
      stage: this.options.stage,
      purpose: context.purpose,
      model: this.model,
      promptHash: context.promptHash,
    };
    const kept = await ledger.answerOf(hash);
    if (kept !== null) {
      const judged = judge(kept);
      await ledger.record({
        ...base,
        callId: randomUUID(),
        promptTokens: 0,
        completionTokens: 0,
        latencyMs: 0,
        outcome: 'reused',
        error: judged.error,
        at: clock.now(),
        completion: kept,
      });
      return judged.value;
    }
    return this.limit.run(async () => {
      const started = performance.now();
      let completion: ChatCompletion;
      try {
        completion = await this.options.chat.complete(
          context.traceContext === undefined ? request : { ...request, traceContext: context.traceContext },
        );
      } catch (error) {
        await ledger.record({
          ...base,
          callId: randomUUID(),
          promptTokens: 0,
          completionTokens: 0,
          latencyMs: performance.now() - started,
          outcome: 'failed',
          error:
            error instanceof LightmemError ? `${error.code}: ${errorMessage(error)}` : errorMessage(error),
          at: clock.now(),
          completion: null,
        });
        throw error;
      }
      const latencyMs = performance.now() - started;
      const judged = judge(completion);
      await ledger.record({
        ...base,
        callId: randomUUID(),
        promptTokens: completion.promptTokens,
        completionTokens: completion.completionTokens,
        latencyMs,
        outcome: judged.outcome,
        error: judged.error,
        at: clock.now(),
        completion,
      });
      return judged.value;
    });
  }
}
