import type { ChatMessage, ChatRequest } from '../../../core/ports/chat-model.js';
import { InvalidInputError } from '../../../core/errors.js';
import { shortHash } from '../../../core/model/ids.js';
import type { CallContext, LedgeredChat } from '../../llm/ledgered-chat.js';
import type { CaseDecision, DecideContext, DecisionProblem, UpdateCase, UpdateDecider } from '../decision.js';
import { parseUpdateAnswer, updateSchema, updateShape, type ParsedUpdate } from './update-answer.js';
import { renderCase, type RenderedSource } from './update-prompt.js';

export interface LlmUpdateDeciderSettings {
  /** The prompt's name (`update`, or a file): for logs and reports; the prompt hash is in the policy. */
  readonly promptName: string;
  /** The system prompt. */
  readonly prompt: string;
  /** Completion tokens an answer may use (a cut answer is asked again with twice as many). */
  readonly maxTokens: number;
  readonly temperature: number;
}

/** Changes when the rendering, the schema or the repair wording change: part of the prompt hash. */
const renderVersion = 'update-render-v1';
/** How much of a bad answer a problem keeps. */
const answerExcerptChars = 2_000;
/** Completion tokens a repair of a cut answer may use: twice the first request's, up to this. */
const maxRepairTokens = 16_384;

/**
 * LightMem's update call (reference §9.3) over an LLM: the target and its newer similar memories are
 * rendered with case-local ids (`T`, `S1`…`Sn`, oldest first), one call asks for structured JSON
 * `{reason, action, memory, by}`, and the answer is decoded strictly: an update needs a non-empty memory, a
 * supersede must name one of the sources (mapped back to its memory id), an unknown action is malformed.
 * An unusable answer gets one repair request quoting the problem (a cut one is asked again with twice the
 * tokens); if that fails too, the case is an `ignore` carrying the problem. Endpoint failures are thrown
 * as the ChatModel reports them. Calls go through the ledger (`consolidate`, `consolidate-repair`), so a
 * case decided before is answered from it.
 */
export class LlmUpdateDecider implements UpdateDecider {
  readonly policy: string;
  readonly promptHash: string;
  readonly promptName: string;

  constructor(
    private readonly chat: LedgeredChat,
    private readonly settings: LlmUpdateDeciderSettings,
  ) {
    this.promptName = settings.promptName;
    this.promptHash = updatePromptHash(settings.prompt);
    this.policy = `llm:${chat.model}@${this.promptHash}`;
  }

  /** The request the decider sends first for a case, and the sources its ids stand for. */
  request(item: UpdateCase): { request: ChatRequest; sources: readonly RenderedSource[] } {
    return updateRequest(item, this.settings);
  }

  async decide(item: UpdateCase, context: DecideContext): Promise<CaseDecision> {
    checkScope(item, context);
    if (item.sources.length === 0) return { action: 'ignore', reason: 'no newer memories to compare with' };
    context.signal?.throwIfAborted();
    const { request, sources } = this.request(item);
    const callContext = {
      tenantId: context.tenantId,
      userId: context.userId,
      conversationId: item.target.conversationId,
      promptHash: this.promptHash,
    };
    const answered = await this.ask(request, sources.length, 'consolidate', callContext);
    if (answered.parsed.ok) return decisionOf(answered.parsed, item, sources);

    context.signal?.throwIfAborted();
    const repair = repairRequest(request, answered.text, answered.parsed);
    const repaired = await this.ask(repair, sources.length, 'consolidate-repair', callContext);
    if (repaired.parsed.ok) return decisionOf(repaired.parsed, item, sources);

    const reason = `LLM answer unusable after a repair request: ${repaired.parsed.error}`;
    const problem: DecisionProblem = {
      code: repaired.parsed.code,
      reason,
      answer: repaired.text.slice(0, answerExcerptChars),
    };
    return { action: 'ignore', reason, problem };
  }

  private ask(
    request: ChatRequest,
    sourceCount: number,
    purpose: 'consolidate' | 'consolidate-repair',
    context: Omit<CallContext, 'purpose'>,
  ): Promise<{ text: string; parsed: ParsedUpdate }> {
    return this.chat.call(request, { ...context, purpose }, (completion) => {
      const parsed = parseUpdateAnswer(completion.text, completion.finishReason, sourceCount);
      const value = { text: completion.text, parsed };
      if (parsed.ok) return { outcome: 'ok', error: null, value };
      return {
        outcome: parsed.code === 'truncated_answer' ? 'truncated' : 'malformed',
        error: `${parsed.code}: ${parsed.error}`,
        value,
      };
    });
  }
}

/** The prompt hash of a decider with this system prompt (rendering, schema and prompt text). */
export function updatePromptHash(prompt: string): string {
  return shortHash(`${renderVersion}\n${JSON.stringify(updateSchema)}\n${prompt}`);
}

type RequestSettings = Pick<LlmUpdateDeciderSettings, 'prompt' | 'maxTokens' | 'temperature'>;

/**
 * The first request for a case (system prompt + the rendered case, structured output asked for) and the
 * sources its ids stand for. Dry runs count what it would cost. A case without sources is decided without
 * a call (`ignore`).
 */
export function updateRequest(
  item: UpdateCase,
  settings: RequestSettings,
): { request: ChatRequest; sources: readonly RenderedSource[] } {
  const rendered = renderCase(item);
  const messages: ChatMessage[] = [
    { role: 'system', content: settings.prompt },
    { role: 'user', content: rendered.text },
  ];
  return {
    request: {
      messages,
      temperature: settings.temperature,
      maxTokens: settings.maxTokens,
      jsonSchema: updateSchema,
    },
    sources: rendered.sources,
  };
}

/**
 * The one repair request. A malformed answer is quoted back with the problem, for the model to correct. A
 * cut answer is not (continuing it would run into the same limit): the model is told it was cut and asked
 * again with twice the completion tokens.
 */
function repairRequest(
  request: ChatRequest,
  answer: string,
  parsed: Extract<ParsedUpdate, { ok: false }>,
): ChatRequest {
  const shape = `The shape is ${updateShape}.`;
  if (parsed.code === 'truncated_answer') {
    const maxTokens = Math.min(maxRepairTokens, 2 * (request.maxTokens ?? maxRepairTokens / 2));
    return {
      ...request,
      maxTokens,
      messages: [
        ...request.messages,
        {
          role: 'user',
          content: `Your last answer was cut off at the token limit before the JSON was complete. Answer again, complete this time: a short reason, and close the JSON. ${shape}`,
        },
      ],
    };
  }
  return {
    ...request,
    messages: [
      ...request.messages,
      { role: 'assistant', content: answer },
      {
        role: 'user',
        content: `Your answer could not be used: ${parsed.error}. Answer again with the corrected JSON only. ${shape}`,
      },
    ],
  };
}

/** A usable answer as a decision: a supersede's `S<k>` becomes that source's memory id. */
function decisionOf(
  parsed: Extract<ParsedUpdate, { ok: true }>,
  item: UpdateCase,
  sources: readonly RenderedSource[],
): CaseDecision {
  const { answer } = parsed;
  switch (answer.action) {
    case 'ignore':
      return { action: 'ignore', reason: answer.reason };
    case 'update':
      if (answer.memory === item.target.text.trim())
        return { action: 'ignore', reason: `the update leaves the target as it is (${answer.reason})` };
      return { action: 'update', text: answer.memory, reason: answer.reason };
    case 'supersede': {
      const source = sources[answer.by - 1];
      if (source === undefined) throw new RangeError(`S${answer.by} reached decisionOf unchecked`);
      return { action: 'supersede', by: source.memory.id, reason: answer.reason };
    }
  }
}

/**
 * Every memory of a case is the context's tenant's and user's: a case mixing scopes is a bug upstream,
 * and no memory of another scope may reach the model.
 */
function checkScope(item: UpdateCase, context: DecideContext): void {
  const memories = [item.target, ...item.sources.map((s) => s.memory)];
  for (const memory of memories) {
    if (memory.tenantId !== context.tenantId || memory.userId !== context.userId) {
      throw new InvalidInputError(
        `memory ${memory.id} of an update case is outside the scope decided for (${context.tenantId}/${context.userId})`,
        'sources',
      );
    }
  }
}
