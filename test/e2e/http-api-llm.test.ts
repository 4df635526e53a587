import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lastJsonLine, startServer, tempDir } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';
import { apiClient } from '../support/api-client.js';
import { factPerLine, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

describe('lightmem serve with an LLM endpoint (scripted)', () => {
  const dir = tempDir('http-llm');
  let llm: FakeOpenAiServer;
  let server: Awaited<ReturnType<typeof startServer>>;
  let env: Record<string, string>;

  before(async () => {
    llm = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: (request) => factPerLine(request.messages.at(-1)?.content ?? ''),
    });
    env = {
      LIGHTMEM_LLM_BASE_URL: llm.baseUrl,
      LIGHTMEM_LLM_MODEL: 'scripted',
      OPENAI_API_KEY: 'sk-never-printed-1234',
    };
    server = await startServer(dir.path, env);
  });
  after(async () => {
    await server.stop();
    await llm.close();
    dir.remove();
  });

  it('extracts memories with the LLM, cites the turns, and reports the cost per tenant at /v1/usage', async () => {
    const events = [
      {
        userId: 'cust-42',
        conversationId: 'call-1',
        turnId: 'c1',
        role: 'customer',
        speaker: 'customer',
        text: 'My router 7731 keeps dropping the connection every evening.',
        occurredAt: '2026-11-30T09:00:00+01:00',
      },
      {
        userId: 'cust-42',
        conversationId: 'call-1',
        turnId: 'a1',
        role: 'agent',
        speaker: 'agent Sam',
        text: 'I will send a replacement router by Friday, I promise.',
        occurredAt: '2026-11-30T09:01:00+01:00',
      },
    ];
    const keyOf = async (tenant: string) =>
      (
        lastJsonLine(
          await runCliInProcess(['tenant', 'create', tenant, '--json', '--data-dir', dir.path], env),
        ) as {
          apiKey: string;
        }
      ).apiKey;
    const brandA = apiClient(server.base, await keyOf('brand-a'));
    const brandB = apiClient(server.base, await keyOf('brand-b'));
    const posted = await brandA.post('/v1/events?wait=true', { events, endSession: true });
    assert.equal(posted.status, 202);
    assert.equal(posted.json['processed'], true);

    const found = await brandA.post<{ results: { text: string; kind: string; sourceTurnIds: string[] }[] }>(
      '/v1/search',
      { userId: 'cust-42', query: 'replacement router' },
    );
    const { results } = found.json;
    const promise = results.find((r) => r.kind === 'commitment');
    assert.ok(promise !== undefined, JSON.stringify(results));
    assert.match(promise.text, /^agent Sam stated: .*replacement router/);
    assert.deepEqual(promise.sourceTurnIds, ['a1']);

    const usage = (
      await brandA.get<{
        tenantId: string;
        llm: { calls: number; promptTokens: number; byModel: { model: string }[] };
      }>('/v1/usage')
    ).json;
    assert.equal(usage.tenantId, 'brand-a');
    assert.equal(usage.llm.calls, llm.chatRequests().length);
    assert.ok(usage.llm.promptTokens > 0);
    assert.equal(usage.llm.byModel[0]?.model, 'scripted');
    const other = (await brandB.get<{ llm: { calls: number } }>('/v1/usage')).json;
    assert.equal(other.llm.calls, 0, "another tenant's usage holds none of brand-a's calls");
    const bad = await brandA.get('/v1/usage?since=yesterday');
    assert.equal(bad.status, 400);
  });

  it('lightmem stats names the extractor and the calls per tenant, and never prints the key', async () => {
    const stats = await runCliInProcess(['stats', '--data-dir', dir.path], env);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /extractor\s+llm-v1\(scripted;general;/);
    assert.match(stats.stdout, /llm\s+brand-a scripted: \d+ calls \(0 failed/);
    assert.doesNotMatch(stats.stdout + stats.stderr, /sk-never-printed/);
  });
});
