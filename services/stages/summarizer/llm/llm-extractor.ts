import type { ChatMessage, ChatRequest } from '../../../core/ports/chat-model.js';
import type {
  ExtractOptions,
  ExtractedMemory,
  ExtractionProblem,
  ExtractionResult,
  Extractor,
} from '../../../core/ports/extractor.js';
import type { Role, TopicSegment } from '../../../core/model/generated.js';
import { shortHash } from '../../../core/model/ids.js';
import type { CallContext, LedgeredChat } from '../../llm/ledgered-chat.js';
import type { TokenBudget } from '../../llm/token-budget.js';
import { BudgetExceededError } from '../../../core/errors.js';
import { approxTokenCount } from '../../../core/text/token-count.js';
import { renderBatch, type BatchTurn } from './batch-prompt.js';
import { extractionSchema, parseAnswer, type AnswerFact, type ParsedAnswer } from './extraction-answer.js';

/** What happens to a batch whose answer stays unusable after the repair request. */
export type MalformedPolicy = 'extractive' | 'dead-letter';
/** What happens to a batch whose tenant is over its token budget: it waits, or becomes extractive memories. */
export type OverBudgetPolicy = 'wait' | 'extractive';

export interface LlmExtractorSettings {
  /** Whose turns are shown to the model (and may become memories). */
  readonly memorizeRoles: ReadonlySet<Role>;
  /** The prompt's name (`general`, `contact-center`, or a file), in the extractor version. */
  readonly promptName: string;
  /** The system prompt. */
  readonly prompt: string;
  /** Completion tokens an answer may use. */
  readonly maxTokens: number;
  readonly temperature: number;
  readonly onMalformed: MalformedPolicy;
  /** Used for batches whose answer stays unusable when `onMalformed` is `extractive`. */
  readonly fallback: Extractor;
  /** Per-tenant token limits, checked before a batch's first call; none: no limit. */
  readonly budget?: TokenBudget | undefined;
  readonly overBudget?: OverBudgetPolicy | undefined;
}

/** Changes when the rendering, the schema or the repair wording change: part of the prompt hash. */
const renderVersion = 'render-v1';
/** How much of a bad answer a dead letter keeps. */
const answerExcerptChars = 2_000;

/**
 * Light2 with an LLM (reference §6): the STM batch is rendered as topic blocks with batch-local ids, one
 * call asks for standalone facts as structured JSON, and every fact becomes a memory that cites the turns
 * it came from (their original text kept as `sourceText`, so search still matches what was said). An id
 * outside the batch is rejected, never clamped onto another turn. An answer that does not decode, or is
 * cut at max_tokens, gets one repair request quoting the problem; if that fails too, the batch's turns
 * become extractive memories (or none, by config) and the answer is dead-lettered with the reason.
 * Endpoint failures are thrown as they are (retryable ones retry the batch later); calls go through the
 * ledger, so a batch redone after a crash is answered from it.
 */
export class LlmExtractor implements Extractor {
  readonly version: string;
  readonly promptHash: string;

  constructor(
    private readonly chat: LedgeredChat,
    private readonly settings: LlmExtractorSettings,
  ) {
    const roles = [...settings.memorizeRoles].sort().join(',');
    this.version = `llm-v1(${chat.model};${settings.promptName};${roles};max${settings.maxTokens};t${settings.temperature})`;
    this.promptHash = shortHash(`${renderVersion}\n${JSON.stringify(extractionSchema)}\n${settings.prompt}`);
  }

  /** The request the extractor sends first for a batch, and the turns its ids stand for. */
  request(batch: readonly TopicSegment[]): { request: ChatRequest; turns: readonly BatchTurn[] } {
    return extractionRequest(batch, this.settings);
  }

  async extract(batch: readonly TopicSegment[], options: ExtractOptions = {}): Promise<ExtractionResult> {
    const [first] = batch;
    if (first === undefined) return { memories: [], problems: [] };
    const { request, turns } = this.request(batch);
    if (turns.length === 0) return { memories: [], problems: [] };
    const over = await this.overBudget(first.tenantId, request);
    if (over !== null) return this.fallback(batch, []);
    const context = {
      tenantId: first.tenantId,
      userId: first.userId,
      conversationId: first.conversationId,
      promptHash: this.promptHash,
      traceContext: options.traceContext,
    };
    const answered = await this.ask(request, turns.length, 'extract', context);
    if (answered.parsed.ok)
      return this.result(answered.parsed.facts, answered.parsed.rejected, turns, answered.text);

    const repair = repairRequest(request, answered.text, answered.parsed);
    const repaired = await this.ask(repair, turns.length, 'repair', context);
    if (repaired.parsed.ok)
      return this.result(repaired.parsed.facts, repaired.parsed.rejected, turns, repaired.text);

    const problem: ExtractionProblem = {
      reason: `LLM answer unusable after a repair request (${this.settings.onMalformed === 'extractive' ? 'turns kept as extractive memories' : 'no memories made'}): ${repaired.parsed.error}`,
      payload: repaired.text.slice(0, answerExcerptChars),
    };
    if (this.settings.onMalformed === 'dead-letter') return { memories: [], problems: [problem] };
    return this.fallback(batch, [problem]);
  }

  /**
   * Null when the tenant's budget has room for the batch. Over it: throws the BudgetExceededError (the
   * batch waits; `overBudget: wait`) or returns it (the batch becomes extractive memories).
   */
  private async overBudget(tenantId: string, request: ChatRequest): Promise<BudgetExceededError | null> {
    const { budget } = this.settings;
    if (budget === undefined) return null;
    const estimate =
      request.messages.reduce((sum, m) => sum + approxTokenCount(m.content), 0) +
      (request.maxTokens ?? 0) / 4;
    try {
      await budget.admit(tenantId, Math.round(estimate));
      return null;
    } catch (error) {
      if (!(error instanceof BudgetExceededError) || this.settings.overBudget !== 'extractive') throw error;
      return error;
    }
  }

  /** The batch's turns as the fallback extractor's memories, marked as made by it (their own version and ids). */
  private async fallback(
    batch: readonly TopicSegment[],
    problems: readonly ExtractionProblem[],
  ): Promise<ExtractionResult> {
    const { fallback } = this.settings;
    const made = await fallback.extract(batch);
    const madeBy = { version: fallback.version, promptHash: fallback.promptHash };
    return {
      memories: made.memories.map((memory) => ({ ...memory, madeBy })),
      problems: [...made.problems, ...problems],
    };
  }

  private ask(
    request: ChatRequest,
    turnCount: number,
    purpose: 'extract' | 'repair',
    context: Omit<CallContext, 'purpose'>,
  ): Promise<{ text: string; parsed: ParsedAnswer }> {
    return this.chat.call(request, { ...context, purpose }, (completion) => {
      const parsed = parseAnswer(completion.text, completion.finishReason, turnCount);
      const value = { text: completion.text, parsed };
      if (parsed.ok) {
        const error =
          parsed.rejected.length === 0 ? null : `${parsed.rejected.length} facts cite ids outside the batch`;
        return { outcome: 'ok', error, value };
      }
      return { outcome: parsed.truncated ? 'truncated' : 'malformed', error: parsed.error, value };
    });
  }

  private result(
    facts: readonly AnswerFact[],
    rejected: readonly { fact: string; sourceIds: readonly number[] }[],
    turns: readonly BatchTurn[],
    answer: string,
  ): ExtractionResult {
    const memories = facts.map((fact) => memoryOf(fact, turns));
    if (rejected.length === 0) return { memories, problems: [] };
    const problem: ExtractionProblem = {
      reason: `${rejected.length} of ${facts.length + rejected.length} facts rejected: they cite ids outside the batch (1 to ${turns.length})`,
      payload: answer.slice(0, answerExcerptChars),
    };
    return { memories, problems: [problem] };
  }
}

type RequestSettings = Pick<LlmExtractorSettings, 'memorizeRoles' | 'prompt' | 'maxTokens' | 'temperature'>;

/**
 * The first request for a batch (system prompt + the rendered batch, structured output asked for) and the
 * turns its ids stand for; none to send when `turns` is empty. Dry runs count what it would cost.
 */
export function extractionRequest(
  batch: readonly TopicSegment[],
  settings: RequestSettings,
): { request: ChatRequest; turns: readonly BatchTurn[] } {
  const rendered = renderBatch(batch, settings.memorizeRoles);
  return {
    request: requestWith(
      [
        { role: 'system', content: settings.prompt },
        { role: 'user', content: rendered.text },
      ],
      settings,
    ),
    turns: rendered.turns,
  };
}

function requestWith(messages: readonly ChatMessage[], settings: RequestSettings): ChatRequest {
  return {
    messages,
    temperature: settings.temperature,
    maxTokens: settings.maxTokens,
    jsonSchema: extractionSchema,
  };
}

/** Completion tokens a repair of a cut answer may use: twice the first request's, up to this. */
const maxRepairTokens = 16_384;

/**
 * The one repair request. A malformed answer is quoted back with the parse error, for the model to correct.
 * A cut answer is not (continuing it would run into the same limit): the model is told it was cut and
 * asked again with twice the completion tokens, for fewer and shorter facts.
 */
function repairRequest(
  request: ChatRequest,
  answer: string,
  parsed: Extract<ParsedAnswer, { ok: false }>,
): ChatRequest {
  const shape =
    'The shape is {"data": [...]} where each item has "source_ids" (a list of ids of the input\'s lines), ' +
    '"kind" (fact, preference, commitment or relation), "speaker" and "fact" (the memory as a sentence).';
  if (parsed.truncated) {
    const maxTokens = Math.min(maxRepairTokens, 2 * (request.maxTokens ?? maxRepairTokens / 2));
    return {
      ...request,
      maxTokens,
      messages: [
        ...request.messages,
        {
          role: 'user',
          content: `Your last answer was cut off at the token limit before the JSON was complete. Answer again, complete this time: fewer and shorter facts if needed, and close the JSON. ${shape}`,
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

/** A fact as a memory: its turns (ids checked by parseAnswer), the first one's time, topic and speaker. */
function memoryOf(fact: AnswerFact, turns: readonly BatchTurn[]): ExtractedMemory {
  const sources = [...fact.sourceIds]
    .sort((a, b) => a - b)
    .map((id) => turns[id - 1])
    .filter((t): t is BatchTurn => t !== undefined);
  const [first] = sources;
  if (first === undefined) throw new RangeError('a fact without source turns reached memoryOf');
  const speakers = [...new Set(sources.map((s) => s.turn.speaker))];
  return {
    text: fact.fact,
    kind: fact.kind,
    topicId: first.segment.segmentId,
    speaker: speakers.join(', '),
    sourceTurnIds: sources.map((s) => s.turn.turnId),
    occurredAt: first.turn.occurredAt,
    zoneOffset: first.turn.zoneOffset,
    sourceText: sources.map((s) => `${s.turn.speaker}: ${s.turn.sourceText ?? s.turn.text}`).join('\n'),
  };
}
