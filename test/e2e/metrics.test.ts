import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/cli.js';
import { openRuntime } from '../support/embedded.js';
import { serveInProcess, type InProcessApi } from '../support/in-process-api.js';
import { parsePrometheusText, sampleSum, type MetricFamily } from '../support/prometheus-text.js';
import { silentLogger } from '../support/memory-logger.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { startOpsServer } from '../../services/telemetry/ops-server.js';

/** GET /metrics of the API and of a service's ops endpoints: Prometheus text whose counters move. */

async function scrape(url: string): Promise<Map<string, MetricFamily>> {
  const answer = await fetch(url);
  assert.equal(answer.status, 200);
  assert.match(answer.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await answer.text());
}

describe('GET /metrics of the API', () => {
  const dir = tempDir('metrics');
  let runtime: EmbeddedRuntime;
  let api: InProcessApi;
  before(async () => {
    runtime = await openRuntime(dir.path);
    api = await serveInProcess(runtime);
  });
  after(async () => {
    await api.close();
    await runtime.close();
    dir.remove();
  });

  it('parses as Prometheus text, needs no key, and its counters move as turns are ingested and searched', async () => {
    const before = await scrape(`${api.base}/metrics`);
    for (const name of [
      'lightmem_stage_records_total',
      'lightmem_stage_batch_duration_seconds',
      'lightmem_stage_pending_records',
      'lightmem_search_duration_seconds',
      'lightmem_llm_calls_total',
      'lightmem_dead_letters_total',
      'lightmem_process_resident_memory_bytes',
    ]) {
      assert.ok(before.has(name), `${name} is exposed`);
    }
    assert.equal(before.get('lightmem_stage_batch_duration_seconds')?.type, 'histogram');
    const client = await api.client('acme');
    const events = Array.from({ length: 6 }, (_, i) => ({
      userId: 'alice',
      conversationId: 'chat-1',
      turnId: `t${i}`,
      role: i % 2 === 0 ? 'customer' : 'agent',
      text: `Turn ${i}: the parcel to Porto was delayed by the storm, a refund of ${10 + i} euros is due.`,
      occurredAt: `2024-05-01T09:0${i}:00Z`,
    }));
    const ingested = await client.post('/v1/events?wait=true', { events, endSession: true });
    assert.equal(ingested.status, 202);
    assert.equal(ingested.json['processed'], true);
    const searched = await client.post('/v1/search', {
      userId: 'alice',
      query: 'refund for the Porto parcel',
    });
    assert.equal(searched.status, 200);

    const after = await scrape(`${api.base}/metrics`);
    const moved = (sample: string, labels: Record<string, string> = {}) =>
      sampleSum(after, sample, labels) - sampleSum(before, sample, labels);
    // Every turn went through the compressor; the indexer wrote memories.
    assert.ok(moved('lightmem_stage_records_total', { stage: 'compressor' }) >= 6);
    assert.ok(moved('lightmem_stage_records_total', { stage: 'indexer' }) >= 1);
    assert.ok(moved('lightmem_stage_batch_duration_seconds_count', { stage: 'segmenter' }) >= 1);
    assert.equal(moved('lightmem_search_duration_seconds_count', { outcome: 'ok' }), 1);
    // Caught up: nothing pending for any stage.
    const pending = after.get('lightmem_stage_pending_records')?.samples ?? [];
    assert.ok(pending.some((s) => s.labels['stage'] === 'compressor'));
    assert.ok(
      pending.every((s) => s.value === 0),
      JSON.stringify(pending),
    );
    // A request refused before any search runs (a blank query) is no search.
    assert.equal((await client.post('/v1/search', { userId: 'alice', query: '   ' })).status, 400);
    const last = await scrape(`${api.base}/metrics`);
    assert.equal(
      sampleSum(last, 'lightmem_search_duration_seconds_count'),
      sampleSum(after, 'lightmem_search_duration_seconds_count'),
    );
  });
});

describe('ops endpoints of a lightmem service', () => {
  it('answers /metrics, /livez, and /readyz as the service works or not; other paths and methods are refused', async () => {
    let working = true;
    const ops = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      logger: silentLogger,
      readiness: async () =>
        working ? { ready: true, reasons: [] } : { ready: false, reasons: ['stopping'] },
      lag: async () => [{ stage: 'segmenter', end: 120, committed: 100 }],
    });
    try {
      const metrics = await scrape(`${ops.url}/metrics`);
      assert.equal(sampleSum(metrics, 'lightmem_stage_pending_records', { stage: 'segmenter' }), 20);
      assert.equal((await fetch(`${ops.url}/livez`)).status, 200);
      assert.equal((await fetch(`${ops.url}/readyz`)).status, 200);
      working = false;
      const notReady = await fetch(`${ops.url}/readyz`);
      assert.equal(notReady.status, 503);
      assert.deepEqual(((await notReady.json()) as { reasons: string[] }).reasons, ['stopping']);
      assert.equal((await fetch(`${ops.url}/livez`)).status, 200);
      assert.equal((await fetch(`${ops.url}/nope`)).status, 404);
      assert.equal((await fetch(`${ops.url}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await ops.close();
    }
  });
});
