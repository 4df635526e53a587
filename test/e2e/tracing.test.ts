import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { trace, context, propagation } from '@opentelemetry/api';
import {
  InMemorySpanExporter,
  NodeTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-node';
import { tempDir } from '../support/cli.js';
import { openRuntime } from '../support/embedded.js';
import { serveInProcess, type InProcessApi } from '../support/in-process-api.js';
import { factPerLine, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { enableTracingApi } from '../../services/telemetry/trace-context.js';

/**
 * One conversation through the embedded pipeline with tracing on (an in-memory exporter): one trace from
 * POST /v1/events through every stage, the LLM call with its token counts, to the store write.
 */

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

describe('traces from a turn to its memory', () => {
  const dir = tempDir('tracing');
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  let llm: FakeOpenAiServer;
  let runtime: EmbeddedRuntime;
  let api: InProcessApi;

  before(async () => {
    // As tracing-setup.ts registers it: no context manager, the context is passed explicitly.
    provider.register({ contextManager: null, propagator: null });
    await enableTracingApi();
    llm = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: (request) => factPerLine(request.messages.at(-1)?.content ?? ''),
    });
    runtime = await openRuntime(dir.path, { llm: { baseUrl: llm.baseUrl, model: 'scripted' } });
    api = await serveInProcess(runtime);
  });
  after(async () => {
    await api.close();
    await runtime.close();
    await llm.close();
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
    dir.remove();
  });

  it('one trace: the request, compressor, segmenter, summarizer with its LLM call, indexer and the store write', async () => {
    const client = await api.client('acme');
    const events = [
      {
        userId: 'cust-42',
        conversationId: 'call-1',
        turnId: 'c1',
        role: 'customer',
        text: 'My router 7731 keeps dropping the connection every evening, it is the secret word Zebra9.',
        occurredAt: '2026-11-30T09:00:00Z',
      },
      {
        userId: 'cust-42',
        conversationId: 'call-1',
        turnId: 'a1',
        role: 'agent',
        speaker: 'agent Sam',
        text: 'I will send a replacement router by Friday, I promise.',
        occurredAt: '2026-11-30T09:01:00Z',
      },
    ];
    // The caller's own trace: the request continues it.
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const posted = await client.raw('/v1/events?wait=true', {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body: JSON.stringify({ events, endSession: true }),
    });
    assert.equal(posted.status, 202);
    assert.equal(((await posted.json()) as { processed: boolean }).processed, true);
    await provider.forceFlush();

    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const names = spans.map((s) => s.name);
    const one = (name: string): ReadableSpan => {
      const found = spans.filter((s) => s.name === name);
      assert.ok(found.length >= 1, `no span ${name} in the trace: ${names.join(', ')}`);
      return found[0] as ReadableSpan;
    };
    const request = one('POST /v1/events');
    assert.equal(parentOf(request), '00f067aa0ba902b7');
    const stages = ['compressor', 'segmenter', 'summarizer', 'indexer'].map((stage) => one(`stage ${stage}`));
    // A chain: each stage's span is a child of the one that wrote its input.
    assert.equal(parentOf(stages[0] as ReadableSpan), request.spanContext().spanId);
    for (let i = 1; i < stages.length; i++) {
      assert.equal(
        parentOf(stages[i] as ReadableSpan),
        stages[i - 1]?.spanContext().spanId,
        names.join(', '),
      );
    }
    const chat = one('chat scripted');
    assert.equal(parentOf(chat), stages[2]?.spanContext().spanId);
    assert.ok(Number(chat.attributes['gen_ai.usage.input_tokens']) > 0);
    assert.ok(Number(chat.attributes['gen_ai.usage.output_tokens']) > 0);
    assert.equal(chat.attributes['gen_ai.request.model'], 'scripted');
    const write = one('memory store upsert');
    assert.equal(parentOf(write), stages[3]?.spanContext().spanId);
    assert.ok(Number(write.attributes['lightmem.memories']) >= 1);
    // No turn text in any attribute.
    for (const span of spans) {
      const values = JSON.stringify(span.attributes);
      assert.doesNotMatch(values, /Zebra9|router 7731|replacement router/, span.name);
    }
  });
});
