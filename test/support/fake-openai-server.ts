/**
 * A real local HTTP server that speaks enough of the OpenAI API for tests: `POST /v1/chat/completions`
 * (request decoded with zod, answer with `usage`) and `GET /v1/models`. A scripted responder answers each
 * chat request by its content and its call number (1-based), and can fail it with any status; every
 * request is recorded, and so is the largest number of chat requests in flight at once.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { approxTokenCount } from '../../services/core/text/token-count.js';

const ChatRequestBody = z.looseObject({
  model: z.string().min(1),
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['system', 'user', 'assistant', 'developer', 'tool']),
        content: z.string(),
      }),
    )
    .min(1),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  max_tokens: z.number().int().positive().optional(),
  response_format: z.looseObject({ type: z.enum(['text', 'json_object', 'json_schema']) }).optional(),
});

export type FakeChatRequest = z.infer<typeof ChatRequestBody>;

/**
 * A completion's text (usage counted with approxTokenCount); a completion with its finish reason
 * (`length`: cut at max_tokens); or a raw answer: `status` and JSON `body` (an error body in OpenAI's shape
 * when omitted) or a `rawBody` sent as it is (a body that is not JSON), with extra headers.
 */
export type FakeReply =
  | string
  | { readonly content: string; readonly finishReason: 'stop' | 'length' }
  | {
      readonly status: number;
      readonly body?: unknown;
      readonly rawBody?: string;
      readonly headers?: Readonly<Record<string, string>>;
    };

export interface FakeCallContext {
  /** 1-based number of this chat request among all the server has received. */
  readonly call: number;
  /** Aborted when the client goes away (a timeout) or the server closes. */
  readonly signal: AbortSignal;
}

export type FakeResponder = (
  request: FakeChatRequest,
  context: FakeCallContext,
) => FakeReply | Promise<FakeReply>;

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  /** The decoded chat request (undefined for other routes and bodies that did not decode). */
  readonly body: FakeChatRequest | undefined;
}

export interface FakeOpenAiServerOptions {
  readonly responder?: FakeResponder | undefined;
  /** Model ids `GET /v1/models` lists; default `['fake-model']`. */
  readonly models?: readonly string[] | undefined;
  /** `retry-after-ms` sent with every error status, so clients retry at once; default 1; null: none. */
  readonly retryAfterMs?: number | null | undefined;
}

export interface FakeOpenAiServer {
  /** `http://127.0.0.1:<port>/v1`. */
  readonly baseUrl: string;
  readonly requests: readonly RecordedRequest[];
  /** Chat requests only, in arrival order. */
  readonly chatRequests: () => readonly FakeChatRequest[];
  /** The most chat requests that were in flight at the same time. */
  readonly maxInFlight: () => number;
  /** Replaces the responder (counters and records are kept). */
  respondWith(responder: FakeResponder): void;
  close(): Promise<void>;
}

/** Echoes the last message back: the default responder. */
const echo: FakeResponder = (request) => `echo: ${request.messages.at(-1)?.content ?? ''}`;

/** A responder that fails the given calls (1-based) with `status` and answers the others with `then`. */
export function failingCalls(calls: readonly number[], status: number, then: FakeResponder): FakeResponder {
  return (request, context) =>
    calls.includes(context.call)
      ? { status, body: errorBody(`scripted failure of call ${context.call}`, status) }
      : then(request, context);
}

export function errorBody(message: string, status: number): unknown {
  return {
    error: { message, type: status === 429 ? 'rate_limit_error' : 'api_error', param: null, code: null },
  };
}

export async function startFakeOpenAiServer(
  options: FakeOpenAiServerOptions = {},
): Promise<FakeOpenAiServer> {
  let responder = options.responder ?? echo;
  const models = options.models ?? ['fake-model'];
  const retryAfterMs = options.retryAfterMs === undefined ? 1 : options.retryAfterMs;
  const requests: RecordedRequest[] = [];
  const closing = new AbortController();
  let calls = 0;
  let inFlight = 0;
  let maxInFlight = 0;

  const send = (
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
    raw?: string,
  ) => {
    if (res.destroyed || res.writableEnded) return;
    const extra = status >= 400 && retryAfterMs !== null ? { 'retry-after-ms': String(retryAfterMs) } : {};
    res.writeHead(status, { 'content-type': 'application/json', ...extra, ...headers });
    res.end(raw ?? JSON.stringify(body));
  };

  const chat = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    const raw = await readBody(req);
    let decoded: FakeChatRequest | undefined;
    try {
      const parsed = ChatRequestBody.safeParse(JSON.parse(raw));
      decoded = parsed.success ? parsed.data : undefined;
    } catch {
      decoded = undefined;
    }
    requests.push({ method: 'POST', path, authorization: req.headers.authorization, body: decoded });
    if (decoded === undefined) {
      send(res, 400, errorBody('request body is not a chat completion request', 400));
      return;
    }
    const call = ++calls;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const gone = new AbortController();
    const abort = () => gone.abort();
    res.on('close', abort);
    closing.signal.addEventListener('abort', abort, { once: true });
    try {
      const reply = await responder(decoded, { call, signal: gone.signal });
      if (typeof reply === 'string') send(res, 200, completion(decoded, reply, call));
      else if ('content' in reply)
        send(res, 200, completion(decoded, reply.content, call, reply.finishReason));
      else
        send(
          res,
          reply.status,
          reply.body ?? errorBody(`scripted status ${reply.status}`, reply.status),
          { ...reply.headers },
          reply.rawBody,
        );
    } catch (error) {
      if (!gone.signal.aborted) send(res, 500, errorBody(`responder failed: ${String(error)}`, 500));
    } finally {
      inFlight--;
      res.off('close', abort);
      closing.signal.removeEventListener('abort', abort);
    }
  };

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method === 'POST' && path === '/v1/chat/completions') {
      chat(req, res, path).catch(() => res.destroy());
      return;
    }
    requests.push({
      method: req.method ?? '',
      path,
      authorization: req.headers.authorization,
      body: undefined,
    });
    req.resume();
    if (req.method === 'GET' && path === '/v1/models') {
      send(res, 200, {
        object: 'list',
        data: models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake-openai-server' })),
      });
    } else {
      send(res, 404, errorBody(`no route ${req.method ?? ''} ${path}`, 404));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    chatRequests: () => requests.flatMap((request) => (request.body === undefined ? [] : [request.body])),
    maxInFlight: () => maxInFlight,
    respondWith(next) {
      responder = next;
    },
    close: async () => {
      closing.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function completion(
  request: FakeChatRequest,
  content: string,
  call: number,
  finishReason: 'stop' | 'length' = 'stop',
): unknown {
  const promptTokens = request.messages.reduce((sum, message) => sum + approxTokenCount(message.content), 0);
  const completionTokens = approxTokenCount(content);
  return {
    id: `chatcmpl-fake-${call}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: request.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, refusal: null },
        logprobs: null,
        finish_reason: finishReason,
      },
    ],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A scripted extraction answer: one fact per line of the batch in the request's last message (the
 * `[time, weekday] <id>.<speaker>: <text>` lines of the LLM extractor), citing that line's id; `commitment`
 * when the text promises, else `fact`.
 */
export function factPerLine(content: string): string {
  const data = [...content.matchAll(/^\[[^\]]+\] (\d+)\.([^:]+): (.*)$/gm)].map((m) => ({
    source_ids: [Number(m[1])],
    kind: /promise|will/i.test(m[3] ?? '') ? 'commitment' : 'fact',
    speaker: m[2],
    fact: `${m[2]} stated: ${m[3] ?? ''}`,
  }));
  return JSON.stringify({ data });
}
