/**
 * ChatModel over an OpenAI-compatible `/chat/completions` endpoint, through the `openai` package. The
 * package retries 408, 409, 429, 5xx and connection failures (`maxRetries`, exponential backoff, honouring
 * `retry-after`); what still fails is mapped to a LightmemError: transient failures are retryable
 * (UnavailableError), refusals (400, 401, 403, 404, 422…) are not. Messages name the status, the model and
 * the endpoint, never the api key.
 */
import type OpenAI from 'openai';
import { LightmemError, UnavailableError, errorMessage } from '../../core/errors.js';
import type {
  ChatCompletion,
  ChatModel,
  ChatRequest,
  FinishReason,
  JsonSchemaFormat,
} from '../../core/ports/chat-model.js';

/**
 * How a request's JSON schema is sent: OpenAI's `json_schema` (strict), a `schema` beside `json_object`
 * (llama.cpp's server, which refuses `json_schema`), or plain `json_object` (the schema only in the
 * prompt). `auto` starts with `json_schema` and steps down when the endpoint refuses the format (HTTP 400
 * or 422), remembering what worked.
 */
export type StructuredOutputMode = 'auto' | 'json_schema' | 'json_object_schema' | 'json_object';
const structuredSteps = ['json_schema', 'json_object_schema', 'json_object'] as const;
type StructuredStep = (typeof structuredSteps)[number];

export interface OpenAiChatOptions {
  /** E.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`. */
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly model: string;
  /** Per attempt; default 60,000. */
  readonly timeoutMs?: number | undefined;
  /** Retries after the first attempt; default 3. */
  readonly maxRetries?: number | undefined;
  /** Default `auto`. */
  readonly structuredOutput?: StructuredOutputMode | undefined;
}

const defaultTimeoutMs = 60_000;
const defaultMaxRetries = 3;
/** How much of an endpoint's error text a message keeps. */
const detailChars = 300;

export class OpenAiChat implements ChatModel {
  readonly model: string;
  /** `<base URL>/chat/completions` without credentials, for messages. */
  readonly endpoint: string;
  /** The SDK and its client, loaded on the first request: a process that never calls the model skips it. */
  #client: Promise<{ readonly sdk: typeof OpenAI; readonly client: OpenAI }> | undefined;
  readonly #baseUrl: string;
  readonly #apiKey: string;
  readonly #timeoutMs: number;
  readonly #maxRetries: number;
  /** The structured-output format this endpoint takes (stepped down in `auto` mode). */
  #structured: StructuredStep;
  readonly #autoStructured: boolean;

  constructor(options: OpenAiChatOptions) {
    const url = parseBaseUrl(options.baseUrl);
    if (options.model.trim() === '') throw configError('the chat model name is empty', 'model');
    this.#timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
    this.#maxRetries = options.maxRetries ?? defaultMaxRetries;
    if (!Number.isInteger(this.#timeoutMs) || this.#timeoutMs <= 0) {
      throw configError(`timeoutMs must be a positive integer, got ${this.#timeoutMs}`, 'timeoutMs');
    }
    if (!Number.isInteger(this.#maxRetries) || this.#maxRetries < 0) {
      throw configError(`maxRetries must be a non-negative integer, got ${this.#maxRetries}`, 'maxRetries');
    }
    const mode = options.structuredOutput ?? 'auto';
    this.#autoStructured = mode === 'auto';
    this.#structured = mode === 'auto' ? 'json_schema' : mode;
    this.model = options.model;
    this.#apiKey = options.apiKey;
    this.endpoint = `${publicUrl(url)}/chat/completions`;
    this.#baseUrl = url.href.replace(/\/+$/, '');
  }

  #connect(): Promise<{ readonly sdk: typeof OpenAI; readonly client: OpenAI }> {
    this.#client ??= import('openai').then(({ default: sdk }) => ({
      sdk,
      client: new sdk({
        baseURL: this.#baseUrl,
        apiKey: this.#apiKey,
        organization: null,
        project: null,
        timeout: this.#timeoutMs,
        maxRetries: this.#maxRetries,
      }),
    }));
    return this.#client;
  }

  /** The structured-output format in use (after any step down). */
  get structuredOutput(): StructuredStep {
    return this.#structured;
  }

  async complete(request: ChatRequest): Promise<ChatCompletion> {
    for (;;) {
      const step = this.#structured;
      try {
        return await this.#send(request);
      } catch (error) {
        const next = structuredSteps[structuredSteps.indexOf(step) + 1];
        // A refusal of the format: 400/422, or (llama.cpp's server) a 500 that names the formats it takes.
        const refused =
          error instanceof LightmemError &&
          ((error.code === 'invalid_input' && /HTTP 4(00|22)/.test(error.message)) ||
            /HTTP 5\d\d.*(json_object|json_schema|response_format)/is.test(error.message));
        if (request.jsonSchema === undefined || !this.#autoStructured || !refused || next === undefined)
          throw error;
        // Another request may have stepped down meanwhile: step from what this one tried.
        if (this.#structured === step) this.#structured = next;
      }
    }
  }

  async #send(request: ChatRequest): Promise<ChatCompletion> {
    const { sdk, client } = await this.#connect().catch((error: unknown) => {
      // The SDK did not load or refused the options: nothing a retry changes.
      throw new LightmemError(
        'config_invalid',
        `chat model ${this.model} at ${this.endpoint}: cannot create the client: ${this.#redact(errorMessage(error))}`,
        { retryable: false },
      );
    });
    let response: OpenAI.Chat.Completions.ChatCompletion;
    try {
      const body: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = {
        model: this.model,
        messages: request.messages.map((message) => ({ role: message.role, content: message.content })),
        ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
        ...(request.topP === undefined ? {} : { top_p: request.topP }),
        // `max_tokens`, not `max_completion_tokens`: every OpenAI-compatible server (vLLM, Ollama, …) and
        // the protocol of the benchmarks (§13.1) use it; only OpenAI's reasoning models refuse it.
        // eslint-disable-next-line @typescript-eslint/no-deprecated
        ...(request.maxTokens === undefined ? {} : { max_tokens: request.maxTokens }),
        ...this.#responseFormat(request),
      };
      response = await client.chat.completions.create(body);
    } catch (error) {
      throw this.#failure(sdk, error);
    }
    const choice = response.choices[0];
    const text = choice?.message.content;
    if (typeof text !== 'string') {
      throw new LightmemError(
        'internal',
        `chat model ${this.model} at ${this.endpoint} answered without a message content ` +
          `(${response.choices.length} choices)`,
        { retryable: false },
      );
    }
    return {
      text,
      promptTokens: response.usage?.prompt_tokens ?? 0,
      completionTokens: response.usage?.completion_tokens ?? 0,
      finishReason: finishReasonOf(choice?.finish_reason),
    };
  }

  #responseFormat(request: ChatRequest): { response_format?: ResponseFormat } {
    const schema = request.jsonSchema;
    if (schema === undefined) {
      return request.responseFormat === undefined
        ? {}
        : { response_format: { type: request.responseFormat } };
    }
    switch (this.#structured) {
      case 'json_schema':
        return {
          response_format: {
            type: 'json_schema',
            json_schema: { name: schema.name, schema: { ...schema.schema }, strict: true },
          },
        };
      case 'json_object_schema':
        // llama.cpp's extension: the SDK's type does not know the `schema` field.
        return { response_format: jsonObjectWithSchema(schema) };
      case 'json_object':
        return { response_format: { type: 'json_object' } };
    }
  }

  /** The LightmemError for what the client threw after its retries. */
  #failure(sdk: typeof OpenAI, error: unknown): LightmemError {
    const where = `chat model ${this.model} at ${this.endpoint}`;
    const attempts = `${this.#maxRetries + 1} attempt${this.#maxRetries === 0 ? '' : 's'}`;
    if (error instanceof sdk.APIConnectionTimeoutError) {
      return new UnavailableError(`${where}: timed out after ${this.#timeoutMs} ms (${attempts})`, error);
    }
    if (error instanceof sdk.APIUserAbortError) {
      return new LightmemError('internal', `${where}: request aborted`, { retryable: false, cause: error });
    }
    if (error instanceof sdk.APIConnectionError) {
      const reason = this.#redact(rootCause(error));
      return new UnavailableError(`${where}: connection failed (${attempts}): ${reason}`, error);
    }
    if (error instanceof sdk.APIError && typeof error.status === 'number') {
      const status = error.status;
      const detail = this.#redact(error.message.replace(/^\d{3}\s*/, '')).slice(0, detailChars);
      const requestId = typeof error.requestID === 'string' ? `, request id ${error.requestID}` : '';
      const said = detail === '' || detail === 'status code (no body)' ? '' : `: ${detail}`;
      // The client's error is not kept as the cause: an endpoint may echo the key in its body.
      if (isTransientStatus(status)) {
        return new UnavailableError(`${where}: HTTP ${status} (${attempts}${requestId})${said}`);
      }
      const message = `${where} refused the request: HTTP ${status}${requestId}${said}`;
      if (status === 401 || status === 403 || status === 404) {
        return new LightmemError('config_invalid', message, { retryable: false });
      }
      return new LightmemError('invalid_input', message, { retryable: false });
    }
    if (error instanceof LightmemError) return error;
    const message = error instanceof Error ? this.#redact(error.message) : String(error);
    return new LightmemError('internal', `${where}: ${message}`, { retryable: false });
  }

  /** Takes the api key (and anything shaped like one) out of text an endpoint wrote. */
  #redact(text: string): string {
    const masked = this.#apiKey.length >= 4 ? text.split(this.#apiKey).join('***') : text;
    return masked.replace(/\bsk-[\w*-]+/g, 'sk-***');
  }
}

type ResponseFormat = NonNullable<OpenAI.Chat.Completions.ChatCompletionCreateParams['response_format']>;

function jsonObjectWithSchema(format: JsonSchemaFormat): ResponseFormat {
  const withSchema: { type: 'json_object'; schema: Record<string, unknown> } = {
    type: 'json_object',
    schema: { ...format.schema },
  };
  return withSchema;
}

function finishReasonOf(reason: string | null | undefined): FinishReason {
  if (reason === 'length') return 'length';
  return reason === 'stop' || reason === null || reason === undefined ? 'stop' : 'other';
}

/** 408, 409, 429 and 5xx: the statuses the client retries, so still transient after its retries. */
function isTransientStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** The innermost reason of a connection failure (`fetch failed` → `connect ECONNREFUSED 127.0.0.1:9`). */
function rootCause(error: Error): string {
  let reason = error.message;
  let cause: unknown = error.cause;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    reason = cause.message;
    cause = cause.cause;
  }
  return reason;
}

function parseBaseUrl(baseUrl: string): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw configError(`the chat endpoint base URL is not a URL: ${JSON.stringify(baseUrl)}`, 'baseUrl');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw configError(`the chat endpoint base URL must be http(s), got ${url.protocol}`, 'baseUrl');
  }
  return url;
}

/** The URL without user info, query or trailing slash. */
function publicUrl(url: URL): string {
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

function configError(message: string, field: string): LightmemError {
  return new LightmemError('config_invalid', message, { retryable: false, field });
}
