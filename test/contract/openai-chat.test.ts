import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { OpenAiChat } from '../../services/adapters/openai/openai-chat.js';
import { LightmemError } from '../../services/core/errors.js';
import {
  errorBody,
  failingCalls,
  startFakeOpenAiServer,
  type FakeOpenAiServer,
} from '../support/fake-openai-server.js';

const apiKey = 'sk-test-SECRET-0123456789abcdef';

describe('OpenAiChat against an OpenAI-compatible server', () => {
  let server: FakeOpenAiServer;
  let start = 0;
  before(async () => {
    server = await startFakeOpenAiServer();
  });
  after(async () => {
    await server.close();
  });
  beforeEach(() => {
    start = server.requests.length;
    server.respondWith((request) => `echo: ${request.messages.at(-1)?.content ?? ''}`);
  });
  const seen = () => server.requests.slice(start);
  const chat = (options: { timeoutMs?: number; maxRetries?: number } = {}) =>
    new OpenAiChat({ baseUrl: server.baseUrl, apiKey, model: 'fake-model', ...options });

  it('sends the chat request with its settings and returns the text with the usage counts', async () => {
    server.respondWith(() => ({
      status: 200,
      body: {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 0,
        model: 'fake-model',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Paris' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 17, completion_tokens: 2, total_tokens: 19 },
      },
    }));
    const completion = await chat().complete({
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'Capital of France?' },
      ],
      temperature: 0,
      topP: 0.8,
      maxTokens: 2000,
      responseFormat: 'json_object',
    });
    assert.deepEqual(completion, {
      text: 'Paris',
      promptTokens: 17,
      completionTokens: 2,
      finishReason: 'stop',
    });
    const [request] = seen();
    assert.equal(request?.path, '/v1/chat/completions');
    assert.equal(request?.authorization, `Bearer ${apiKey}`);
    assert.equal(request?.body?.model, 'fake-model');
    assert.deepEqual(request?.body?.messages, [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Capital of France?' },
    ]);
    assert.equal(request?.body?.temperature, 0);
    assert.equal(request?.body?.top_p, 0.8);
    assert.equal(request?.body?.max_tokens, 2000);
    assert.deepEqual(request?.body?.response_format, { type: 'json_object' });
  });

  it('leaves out the settings a request does not give', async () => {
    const completion = await chat().complete({ messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(completion.text, 'echo: hi');
    assert.ok(completion.promptTokens > 0 && completion.completionTokens > 0, 'usage from the server');
    const body = seen()[0]?.body;
    assert.equal(body?.temperature, undefined);
    assert.equal(body?.top_p, undefined);
    assert.equal(body?.max_tokens, undefined);
    assert.equal(body?.response_format, undefined);
  });

  it('retries 429 and 500 (the client does) and then succeeds', async () => {
    const calls = server.chatRequests().length;
    server.respondWith(
      failingCalls(
        [calls + 1],
        429,
        failingCalls([calls + 2], 500, () => 'third time'),
      ),
    );
    const completion = await chat({ maxRetries: 3 }).complete({ messages: [{ role: 'user', content: 'q' }] });
    assert.equal(completion.text, 'third time');
    assert.equal(seen().length, 3, 'a 429, a 500, then the answer');
  });

  it('gives up after maxRetries with a retryable error naming the status', async () => {
    server.respondWith(() => ({ status: 503, body: errorBody('overloaded', 503) }));
    await assert.rejects(
      chat({ maxRetries: 2 }).complete({ messages: [{ role: 'user', content: 'q' }] }),
      (error: unknown) => {
        assert.ok(error instanceof LightmemError);
        assert.equal(error.retryable, true);
        assert.equal(error.code, 'storage_unavailable');
        assert.match(error.message, /HTTP 503/);
        assert.match(error.message, /3 attempts/);
        return true;
      },
    );
    assert.equal(seen().length, 3, 'the first attempt and two retries');
  });

  it('refuses a bad key at once: 401 is not retried, and the error never holds the key', async () => {
    // Like OpenAI's own 401, the body echoes the key (OpenAI masks part of it; this one does not).
    server.respondWith((request) => ({
      status: 401,
      body: errorBody(`Incorrect API key provided: ${apiKey} for ${request.model}`, 401),
    }));
    await assert.rejects(
      chat().complete({ messages: [{ role: 'user', content: 'q' }] }),
      (error: unknown) => {
        assert.ok(error instanceof LightmemError);
        assert.equal(error.retryable, false);
        assert.match(error.message, /HTTP 401/);
        assert.ok(error.message.includes(`${server.baseUrl}/chat/completions`), error.message);
        assert.ok(error.message.includes('fake-model'), 'names the model');
        const everything = [error.message, error.stack ?? '', String(error.cause), JSON.stringify(error)];
        for (const text of everything) assert.ok(!text.includes(apiKey), `leaks the key: ${text}`);
        assert.ok(!error.message.includes('SECRET'), error.message);
        return true;
      },
    );
    assert.equal(seen().length, 1, 'not retried');
  });

  for (const status of [400, 403, 404, 422]) {
    it(`does not retry ${status}`, async () => {
      server.respondWith(() => ({ status, body: errorBody(`scripted ${status}`, status) }));
      await assert.rejects(
        chat().complete({ messages: [{ role: 'user', content: 'q' }] }),
        (error: unknown) =>
          error instanceof LightmemError &&
          !error.retryable &&
          error.message.includes(`HTTP ${status}`) &&
          error.message.includes(`scripted ${status}`),
      );
      assert.equal(seen().length, 1);
    });
  }

  it('turns a timeout into a retryable error', async () => {
    server.respondWith(async (_request, { signal }) => {
      await delay(10_000, undefined, { signal });
      return 'too late';
    });
    const started = performance.now();
    await assert.rejects(
      chat({ timeoutMs: 100, maxRetries: 0 }).complete({ messages: [{ role: 'user', content: 'q' }] }),
      (error: unknown) => {
        assert.ok(error instanceof LightmemError);
        assert.equal(error.retryable, true);
        assert.match(error.message, /timed out after 100 ms/);
        return true;
      },
    );
    assert.ok(performance.now() - started < 2000);
  });

  it('turns a refused connection into a retryable error', async () => {
    const gone = await startFakeOpenAiServer();
    await gone.close();
    const closed = new OpenAiChat({ baseUrl: gone.baseUrl, apiKey, model: 'fake-model', maxRetries: 0 });
    await assert.rejects(
      closed.complete({ messages: [{ role: 'user', content: 'q' }] }),
      (error: unknown) =>
        error instanceof LightmemError && error.retryable && /connection failed/.test(error.message),
    );
  });

  it('treats an answer without choices as a non-retryable internal error naming the model', async () => {
    server.respondWith(() => ({
      status: 200,
      body: { id: 'x', object: 'chat.completion', created: 0, model: 'fake-model', choices: [] },
    }));
    await assert.rejects(
      chat().complete({ messages: [{ role: 'user', content: 'q' }] }),
      (error: unknown) => {
        assert.ok(error instanceof LightmemError);
        assert.equal(error.code, 'internal');
        assert.equal(error.retryable, false);
        assert.match(error.message, /fake-model/);
        return true;
      },
    );
  });

  it('refuses a base URL that is not http(s) and a bad retry count', () => {
    assert.throws(
      () => new OpenAiChat({ baseUrl: 'not a url', apiKey, model: 'm' }),
      (error: unknown) => error instanceof LightmemError && error.field === 'baseUrl' && !error.retryable,
    );
    assert.throws(
      () => new OpenAiChat({ baseUrl: server.baseUrl, apiKey, model: 'm', maxRetries: -1 }),
      (error: unknown) => error instanceof LightmemError && error.field === 'maxRetries',
    );
  });

  it('the fake server lists its models and records the request', async () => {
    const response = await fetch(`${server.baseUrl}/models`);
    assert.equal(response.status, 200);
    assert.deepEqual(
      ((await response.json()) as { data: { id: string }[] }).data.map((model) => model.id),
      ['fake-model'],
    );
    assert.deepEqual(
      seen().map((request) => [request.method, request.path]),
      [['GET', '/v1/models']],
    );
  });
});
