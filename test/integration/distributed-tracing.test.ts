import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lastJsonLine, runCli, tempDir } from '../support/cli.js';
import { factPerLine, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.js';
import { fetchModel } from './support/models.js';
import { serve, type RunningServer } from './support/serve.js';
import {
  distributedConfig,
  modelEnv,
  stopStages,
  waitUntil,
  writeConfig,
  type Stage,
  StageProcess,
} from './support/distributed.js';
import { parsePrometheusText, sampleSum } from '../support/prometheus-text.js';

/** A TCP port free now on the loopback interface. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * One trace across processes on real Kafka: `lightmem serve` and the stage services each export spans
 * (OTLP/HTTP) to a collector in the test; the trace context travels in the Kafka records' `traceparent`
 * headers from the request through compressor, segmenter, summarizer (its LLM call to a scripted
 * OpenAI-compatible server) and indexer to the Elasticsearch write.
 */
describe('traces across the stage processes (real Kafka, registry, Elasticsearch)', () => {
  const dir = tempDir('distributed-tracing');
  let receiver: OtlpReceiver;
  let llm: FakeOpenAiServer;
  const stages = new Map<Stage, StageProcess>();
  const opsPorts = new Map<Stage, number>();
  let server: RunningServer | null = null;
  let file = '';
  let apiKey = '';
  const env = { ...modelEnv(), OPENAI_API_KEY: 'sk-test-never-printed' };

  before(async () => {
    receiver = await startOtlpReceiver();
    llm = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: (request) => factPerLine(request.messages.at(-1)?.content ?? ''),
    });
    file = writeConfig(
      dir.path,
      'tracing',
      distributedConfig('tracing', {
        telemetry: { tracesEndpoint: receiver.url },
        llm: { baseUrl: llm.baseUrl, model: 'scripted' },
      }),
    );
    await fetchModel();
    const init = await runCli(['admin', 'init', '--config', file], env);
    assert.equal(init.code, 0, init.stderr);
    // The first tenant before the API starts (else its first start makes `default` with an admin key).
    apiKey = (
      lastJsonLine(await runCli(['tenant', 'create', 'acme', '--json', '--config', file], env)) as {
        apiKey: string;
      }
    ).apiKey;
    // Each stage's ops endpoints on a port the test knows (the other tests let them pick any).
    for (const stage of ['compressor', 'segmenter', 'summarizer', 'indexer', 'applier'] as const) {
      const port = await freePort();
      opsPorts.set(stage, port);
      const process = new StageProcess(stage, file, { ...env, LIGHTMEM_OPS_PORT: String(port) });
      process.start();
      stages.set(stage, process);
    }
    server = await serve(join(dir.path, 'serve'), env, 120_000, 60_000, ['--config', file]);
  });
  after(async () => {
    await server?.stop().catch(() => undefined);
    await stopStages(stages).catch(() => undefined);
    await llm.close();
    await receiver.close();
    dir.remove();
  });

  it('one trace from POST /v1/events through the four stage processes to the store write', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const events = [
      {
        userId: 'cust-7',
        conversationId: 'call-9',
        turnId: 'c1',
        role: 'customer',
        text: 'My parcel 5521 to Porto never arrived, code word Kestrel.',
        occurredAt: '2026-11-30T09:00:00Z',
      },
      {
        userId: 'cust-7',
        conversationId: 'call-9',
        turnId: 'a1',
        role: 'agent',
        speaker: 'agent Ana',
        text: 'I will refund the parcel to Porto by Monday.',
        occurredAt: '2026-11-30T09:01:00Z',
      },
    ];
    const posted = await fetch(`${server?.base ?? ''}/v1/events?wait=true`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${apiKey}`,
        traceparent: `00-${traceId}-b7ad6b7169203331-01`,
      },
      body: JSON.stringify({ events, endSession: true }),
    });
    assert.equal(posted.status, 202, await posted.text());

    const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId);
    const wanted = [
      'POST /v1/events',
      'stage compressor',
      'stage segmenter',
      'stage summarizer',
      'chat scripted',
      'stage indexer',
      'memory store upsert',
    ];
    // Each process sends its spans in batches (every 5 s).
    await waitUntil(
      async () => wanted.every((name) => inTrace().some((s) => s.name === name)),
      () =>
        `spans ${wanted.join(', ')}; have ${inTrace()
          .map((s) => `${s.service}:${s.name}`)
          .join(', ')}`,
      120_000,
    );
    const spans = inTrace();
    const one = (name: string): ReceivedSpan => spans.find((s) => s.name === name) as ReceivedSpan;
    // Each from its own process.
    assert.equal(one('POST /v1/events').service, 'lightmem-api');
    for (const stage of ['compressor', 'segmenter', 'summarizer', 'indexer']) {
      assert.equal(one(`stage ${stage}`).service, `lightmem-${stage}`);
    }
    // A chain of parents across the processes.
    assert.equal(one('POST /v1/events').parentSpanId, 'b7ad6b7169203331');
    assert.equal(one('stage compressor').parentSpanId, one('POST /v1/events').spanId);
    assert.equal(one('stage segmenter').parentSpanId, one('stage compressor').spanId);
    assert.equal(one('stage summarizer').parentSpanId, one('stage segmenter').spanId);
    assert.equal(one('stage indexer').parentSpanId, one('stage summarizer').spanId);
    const chat = one('chat scripted');
    assert.equal(chat.parentSpanId, one('stage summarizer').spanId);
    assert.ok(Number(chat.attributes['gen_ai.usage.input_tokens']) > 0);
    assert.ok(Number(chat.attributes['gen_ai.usage.output_tokens']) > 0);
    const write = one('memory store upsert');
    assert.equal(write.parentSpanId, one('stage indexer').spanId);
    assert.equal(write.attributes['db.system.name'], 'elasticsearch');
    for (const span of spans)
      assert.doesNotMatch(JSON.stringify(span.attributes), /Kestrel|Porto|5521/, span.name);
  });

  it('every stage service answers /metrics with its own counts, /readyz and /livez', async () => {
    for (const stage of ['compressor', 'segmenter', 'summarizer', 'indexer'] as const) {
      const base = `http://127.0.0.1:${opsPorts.get(stage) ?? 0}`;
      const metrics = parsePrometheusText(await (await fetch(`${base}/metrics`)).text());
      assert.ok(sampleSum(metrics, 'lightmem_stage_records_total', { stage }) >= 1, stage);
      assert.ok(sampleSum(metrics, 'lightmem_stage_batch_duration_seconds_count', { stage }) >= 1, stage);
      // The lag of its own input: caught up.
      assert.equal(sampleSum(metrics, 'lightmem_stage_pending_records', { stage }), 0, stage);
      assert.equal((await fetch(`${base}/readyz`)).status, 200, stage);
      assert.equal((await fetch(`${base}/livez`)).status, 200, stage);
    }
    const summarizer = parsePrometheusText(
      await (await fetch(`http://127.0.0.1:${opsPorts.get('summarizer') ?? 0}/metrics`)).text(),
    );
    assert.ok(sampleSum(summarizer, 'lightmem_llm_calls_total', { tenant: 'acme', outcome: 'ok' }) >= 1);
    assert.ok(sampleSum(summarizer, 'lightmem_llm_tokens_total', { tenant: 'acme', kind: 'prompt' }) > 0);
  });
});
