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
}

export interface ChatCompletion {
  readonly text: string;
  /** As the endpoint reports them (`usage`); 0 when it reports none. */
  readonly promptTokens: number;
  readonly completionTokens: number;
}

export interface ChatModel {
  /** The model name the endpoint is asked for. */
  readonly model: string;
  complete(request: ChatRequest): Promise<ChatCompletion>;
}
