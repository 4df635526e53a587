/**
 * Search while the pipeline works: a running `lightmem serve` is given a LoCoMo-size corpus (tenant A),
 * its idle search latency is measured, then a second copy of the file (tenant B) is posted without
 * waiting and searches of tenant A run at a steady pace while that backlog drains. Reports search and
 * health latency idle vs under load, and the drain throughput of each backlog (so a change that buys
 * latency with throughput shows it).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { TurnInput } from '../ingest/index.js';
import { formatInstant } from '../core/model/time.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import type { BenchQuestion } from './locomo-questions.js';

export interface LoadBenchOptions {
  readonly baseUrl: string;
  /** An API key of tenant `bench-a` and one of `bench-b` (every request is authenticated). */
  readonly apiKeys: { readonly a: string; readonly b: string };
  /** Clients searching at once, as fast as answers come, in the throughput phase. */
  readonly concurrentClients: number;
  /** How long the throughput phase runs. */
  readonly throughputSeconds: number;
  /** The events of one copy of the dataset, in order (tenant set per phase). */
  readonly events: readonly TurnInput[];
  readonly questions: readonly BenchQuestion[];
  /** Searches measured on the idle server. */
  readonly idleQueries: number;
  /** Pause between two searches under load (a steady client, not a flood). */
  readonly queryIntervalMs: number;
  readonly limit: number;
  readonly onProgress?: ((phase: string, done: number, total: number) => void) | undefined;
}

export interface DrainRun {
  readonly events: number;
  /** From the first post until every stage had processed the backlog. */
  readonly seconds: number;
  /** Processed: events ÷ seconds. */
  readonly eventsPerSecond: number;
  /** Accepted: events ÷ the time the posts took (the API's answer, before processing). */
  readonly acceptedPerSecond: number;
}

/** Searches as fast as `concurrentClients` clients get answers, on the idle server. */
export interface SearchThroughput {
  readonly clients: number;
  readonly seconds: number;
  readonly searches: number;
  readonly searchesPerSecond: number;
  readonly latency: LatencySummary;
}

export interface LoadBenchReport {
  readonly events: number;
  /** Backlog A drained with no searches running. */
  readonly ingestIdle: DrainRun;
  /** Backlog B drained while searches ran. */
  readonly ingestUnderLoad: DrainRun;
  readonly searchIdle: LatencySummary;
  readonly searchUnderLoad: LatencySummary;
  /** p95 under load ÷ p95 idle. */
  readonly p95Ratio: number;
  readonly healthIdle: LatencySummary;
  readonly healthUnderLoad: LatencySummary;
  readonly searchThroughput: SearchThroughput;
  /** Requests made in the whole run, and the answers other than 2xx among them (a healthy server has none). */
  readonly requests: number;
  readonly errors: number;
  /** errors ÷ requests. */
  readonly errorRate: number;
  /** The first failed answer (status, path and body), to tell what went wrong; null when none failed. */
  readonly firstError: string | null;
}

const HealthBody = z.looseObject({ pending: z.record(z.string(), z.number()).optional() });
const SearchBody = z.looseObject({ results: z.array(z.unknown()) });

/** Each (conversation, session) posted as one batch that ends the session, as a call or chat ends. */
function sessionBatches(events: readonly TurnInput[], tenantId: string): unknown[][] {
  const batches = new Map<string, unknown[]>();
  for (const event of events) {
    const key = JSON.stringify([event.userId, event.conversationId, event.sessionId]);
    let batch = batches.get(key);
    if (batch === undefined) {
      batch = [];
      batches.set(key, batch);
    }
    batch.push({
      tenantId,
      userId: event.userId,
      conversationId: event.conversationId,
      sessionId: event.sessionId,
      turnId: event.turnId,
      seq: event.seq,
      role: event.role,
      speaker: event.speaker,
      text: event.text,
      occurredAt: formatInstant(event.occurredAt, event.zoneOffset),
    });
  }
  return [...batches.values()];
}

export async function runLoadBench(options: LoadBenchOptions): Promise<LoadBenchReport> {
  let errors = 0;
  let requests = 0;
  let firstError: string | null = null;
  const keyOf = (tenantId: string): string =>
    tenantId === 'bench-b' ? options.apiKeys.b : options.apiKeys.a;
  const request = async (
    path: string,
    body?: unknown,
    tenantId = 'bench-a',
  ): Promise<{ ms: number; json: unknown }> => {
    const started = performance.now();
    requests++;
    const response = await fetch(`${options.baseUrl}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${keyOf(tenantId)}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json: unknown = await response.json();
    const ms = performance.now() - started;
    if (!response.ok) {
      errors++;
      firstError ??= `${response.status} ${path}: ${JSON.stringify(json).slice(0, 500)}`;
    }
    return { ms, json };
  };
  const pending = async (): Promise<{ ms: number; total: number }> => {
    const { ms, json } = await request('/healthz');
    const parsed = HealthBody.safeParse(json);
    const counts = parsed.success ? Object.values(parsed.data.pending ?? {}) : [];
    return { ms, total: counts.length === 0 ? Number.NaN : counts.reduce((a, b) => a + b, 0) };
  };
  const post = async (tenantId: string): Promise<{ events: number; seconds: number }> => {
    const started = performance.now();
    const batches = sessionBatches(options.events, tenantId);
    let done = 0;
    for (const events of batches) {
      await request('/v1/events', { events, endSession: true }, tenantId);
      options.onProgress?.(`post ${tenantId}`, ++done, batches.length);
    }
    return {
      events: batches.reduce((sum, batch) => sum + batch.length, 0),
      seconds: (performance.now() - started) / 1000,
    };
  };
  const search = async (index: number): Promise<number> => {
    const question = options.questions[index % options.questions.length];
    if (question === undefined) return 0;
    const { ms, json } = await request('/v1/search', {
      tenantId: 'bench-a',
      userId: question.userId,
      query: question.question,
      limit: options.limit,
    });
    // A search counts once: a failed answer was counted by `request`; a 2xx one must have results.
    if (!SearchBody.safeParse(json).success && isAnswer(json)) {
      errors++;
      firstError ??= `search answered without results: ${JSON.stringify(json).slice(0, 500)}`;
    }
    return ms;
  };
  /** Posts a backlog, then polls until drained (running `whileDraining` meanwhile). */
  const drain = async (tenantId: string, whileDraining: () => Promise<void>): Promise<DrainRun> => {
    const started = performance.now();
    const posted = await post(tenantId);
    const events = posted.events;
    const done = { value: false };
    const work = (async () => {
      while (!done.value) await whileDraining();
    })();
    for (;;) {
      const { total } = await pending();
      options.onProgress?.(
        `drain ${tenantId}`,
        Number.isNaN(total) ? 0 : events - Math.min(events, total),
        events,
      );
      if (total === 0) break;
      await sleep(250);
    }
    done.value = true;
    await work;
    const seconds = (performance.now() - started) / 1000;
    return {
      events,
      seconds: round(seconds),
      eventsPerSecond: round(events / seconds),
      acceptedPerSecond: round(events / Math.max(0.001, posted.seconds)),
    };
  };

  const ingestIdle = await drain('bench-a', () => sleep(250));
  // Warm-up (statement caches, pages, the model's first runs), not counted.
  for (let i = 0; i < 20; i++) await search(i);
  const idleSearch: number[] = [];
  const idleHealth: number[] = [];
  for (let i = 0; i < options.idleQueries; i++) {
    idleSearch.push(await search(i));
    if (i % 10 === 0) idleHealth.push((await pending()).ms);
    options.onProgress?.('search idle', i + 1, options.idleQueries);
  }
  const throughput: number[] = [];
  const throughputStarted = performance.now();
  const throughputEnd = throughputStarted + options.throughputSeconds * 1000;
  let next = 0;
  await Promise.all(
    Array.from({ length: options.concurrentClients }, async () => {
      while (performance.now() < throughputEnd) {
        throughput.push(await search(next++));
        options.onProgress?.('search throughput', throughput.length, throughput.length);
      }
    }),
  );
  const throughputSeconds = (performance.now() - throughputStarted) / 1000;
  const loadSearch: number[] = [];
  const loadHealth: number[] = [];
  let query = 0;
  const ingestUnderLoad = await drain('bench-b', async () => {
    loadSearch.push(await search(query++));
    if (query % 10 === 0) loadHealth.push((await pending()).ms);
    await sleep(options.queryIntervalMs);
  });
  const searchIdle = summarizeLatencies(idleSearch);
  const searchUnderLoad = summarizeLatencies(loadSearch);
  return {
    events: ingestIdle.events,
    ingestIdle,
    ingestUnderLoad,
    searchIdle,
    searchUnderLoad,
    p95Ratio: round(searchUnderLoad.p95Ms / Math.max(0.001, searchIdle.p95Ms)),
    healthIdle: summarizeLatencies(idleHealth),
    healthUnderLoad: summarizeLatencies(loadHealth),
    searchThroughput: {
      clients: options.concurrentClients,
      seconds: round(throughputSeconds),
      searches: throughput.length,
      searchesPerSecond: round(throughput.length / throughputSeconds),
      latency: summarizeLatencies(throughput),
    },
    requests,
    errors,
    errorRate: round(errors / Math.max(1, requests)),
    firstError,
  };
}

/** Whether a JSON answer is not an error body (errors were counted as such). */
function isAnswer(json: unknown): boolean {
  return !(typeof json === 'object' && json !== null && 'error' in json);
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
