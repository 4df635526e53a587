import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { servers } from './support/servers.js';

const factsSchema = {
  type: 'object',
  properties: {
    data: {
      type: 'array',
      items: {
        type: 'object',
        properties: { source_id: { type: 'integer' }, fact: { type: 'string' } },
        required: ['source_id', 'fact'],
      },
    },
  },
  required: ['data'],
};

const messages = [
  {
    role: 'system',
    content:
      'Extract the facts of the turns as JSON: {"data": [{"source_id": <turn number>, "fact": "..."}]}.',
  },
  { role: 'user', content: 'Turn 1: Alice moved to Paris in 2021.\nTurn 2: She adopted a cat named Milo.' },
];

interface ChatCompletion {
  choices: { message: { content: string | null }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number };
}

async function chat(body: Record<string, unknown>): Promise<Response> {
  return fetch(`${servers.llmBaseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: servers.llmModel, messages, max_tokens: 200, temperature: 0, ...body }),
    signal: AbortSignal.timeout(120_000),
  });
}

/** The local chat server started by `npm run infra:up` (llama-cpp-python, SmolLM2-135M-Instruct). */
describe('LLM server (llama-cpp-python, OpenAI-compatible)', () => {
  it('answers a chat completion constrained to a JSON schema, with token usage', async () => {
    const response = await chat({ response_format: { type: 'json_object', schema: factsSchema } });
    assert.equal(response.status, 200, await response.clone().text());
    const completion = (await response.json()) as ChatCompletion;
    const content = completion.choices[0]?.message.content ?? '';
    const parsed = JSON.parse(content) as { data?: unknown };
    assert.ok(Array.isArray(parsed.data), `no data array in ${content}`);
    for (const item of parsed.data as { source_id?: unknown; fact?: unknown }[]) {
      assert.ok(Number.isInteger(item.source_id), `source_id not an integer in ${content}`);
      assert.equal(typeof item.fact, 'string', `fact not a string in ${content}`);
    }
    assert.ok(completion.usage.prompt_tokens > 0, JSON.stringify(completion.usage));
    assert.ok(completion.usage.completion_tokens > 0, JSON.stringify(completion.usage));
  });

  it('refuses the json_schema response format (only json_object takes a schema)', async () => {
    const response = await chat({
      response_format: { type: 'json_schema', json_schema: { name: 'facts', schema: factsSchema } },
    });
    assert.ok(!response.ok, `json_schema was accepted (HTTP ${response.status}): update infra/README.md`);
    assert.match(await response.text(), /'text' or 'json_object'/);
  });
});
