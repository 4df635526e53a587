/**
 * A chat-completion model (an OpenAI-compatible endpoint, or a fake in tests). One call, one completion;
 * the implementation retries transient failures itself and throws a LightmemError that says whether a
 * later retry can still help.
 */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

export interface ChatRequest {
  readonly messages: readonly ChatMessage[];
  readonly temperature?: number | undefined;
  readonly topP?: number | undefined;
  readonly maxTokens?: number | undefined;
  /** Ask for a JSON object (the prompt must say so too). */
  readonly responseFormat?: 'json_object' | undefined;
  /**
   * Ask for JSON of this shape: the implementation sends it the way its endpoint takes it (OpenAI's
   * `json_schema`, a `schema` beside `json_object` for llama.cpp, or plain `json_object`). The answer is
   * still decoded and checked by the caller: a weak model may ignore it.
   */
  readonly jsonSchema?: JsonSchemaFormat | undefined;
  /**
   * The trace the call belongs to (a W3C traceparent), for the span of the call; not sent, and not part of
   * what decides the answer.
   */
  readonly traceContext?: string | undefined;
}

export interface JsonSchemaFormat {
  /** A name for the schema (`[A-Za-z0-9_-]`, as OpenAI requires). */
  readonly name: string;
  readonly schema: Readonly<Record<string, unknown>>;
}

/** Why the model stopped: `length` means the answer was cut at max_tokens (truncated). */
export type FinishReason = 'stop' | 'length' | 'other';

export interface ChatCompletion {
  readonly text: string;
  /** As the endpoint reports them (`usage`); 0 when it reports none. */
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly finishReason: FinishReason;
}

export interface ChatModel {
  /** The model name the endpoint is asked for. */
  readonly model: string;
  complete(request: ChatRequest): Promise<ChatCompletion>;
}
