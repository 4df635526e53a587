import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { batchPolicyOf, runBatch, type BatchPolicy } from '../../services/adapters/batch-policy.js';
import { backoffMs } from '../../services/core/backoff.js';
import {
  InvalidInputError,
  RetriesExhaustedError,
  UnavailableError,
  isRetryable,
} from '../../services/core/errors.js';
import type { LogRecord, StateReader } from '../../services/core/ports/event-log.js';
import { Topics } from '../../services/core/model/topics.js';
import type { DeadLetter } from '../../services/core/model/generated.js';
import { memoryLogger } from '../support/memory-logger.js';
import { metricTotal } from '../support/metric-total.js';

const clock = { now: () => 1_700_000_000_000 };
const emptyState: StateReader = { get: () => Promise.resolve(undefined), keys: () => Promise.resolve([]) };
const fast: BatchPolicy = batchPolicyOf({ maxAttempts: 3, retryBaseMs: 1, retryMaxMs: 2, heartbeatMs: 20 });

function records(count: number): LogRecord<typeof Topics.raw>[] {
  return Array.from({ length: count }, (_, offset) => ({
    topic: Topics.raw,
    offset,
    key: 'acme/c1',
    value: { kind: 'turn', turnId: `t${offset}` } as never,
    appendedAt: 0,
  }));
}

function options(policy: BatchPolicy, extra: { heartbeat?: () => Promise<void> } = {}) {
  return {
    group: 'stage',
    signal: new AbortController().signal,
    logger: memoryLogger(),
    clock,
    policy,
    check: () => undefined,
    ...extra,
  };
}

describe('the batch policy (both event logs)', () => {
  it('caps retryable failures: after maxAttempts tries a retryable RetriesExhaustedError keeps the last failure as its cause', async () => {
    let calls = 0;
    const outage = new UnavailableError('server down');
    const failure = await runBatch(
      records(2),
      () => {
        calls++;
        return Promise.reject(outage);
      },
      emptyState,
      options(fast),
    ).then(
      () => null,
      (error: unknown) => error,
    );
    assert.ok(failure instanceof RetriesExhaustedError);
    assert.equal(calls, 3);
    assert.equal(failure.attempts, 3);
    assert.equal(failure.cause, outage);
    assert.equal(failure.code, 'retries_exhausted');
    assert.ok(isRetryable(failure), 'the stage restarts and tries the batch again later: nothing is dropped');
  });

  it('a batch that recovers before the cap succeeds, with no dead letter', async () => {
    let calls = 0;
    const output = await runBatch(
      records(2),
      async () => {
        calls++;
        if (calls < 3) throw new UnavailableError('flaky');
        return { records: [], state: [{ key: 'k', value: 'v' }] };
      },
      emptyState,
      options(fast),
    );
    assert.deepEqual(output, { records: [], state: [{ key: 'k', value: 'v' }] });
  });

  it('isolates the poison record: only it is dead-lettered, the others keep their output', async () => {
    const output = await runBatch(
      records(3),
      async (batch) => {
        if (batch.some((r) => r.offset === 1)) throw new InvalidInputError('bad turn', 'text');
        return { records: [], state: batch.map((r) => ({ key: `seen/${r.offset}`, value: 'y' })) };
      },
      emptyState,
      options(fast),
    );
    assert.ok(output !== null);
    assert.deepEqual(
      output.state.map((w) => w.key),
      ['seen/0', 'seen/2'],
    );
    assert.equal(output.records.length, 1);
    const letter = output.records[0]?.value as DeadLetter;
    assert.equal(letter.sourceOffset, 1);
    assert.equal(letter.errorCode, 'invalid_input');
    assert.equal(letter.field, 'text');
  });

  it('heartbeats while a long handler runs (a Kafka member keeps its partitions during an LLM batch)', async () => {
    let beats = 0;
    const output = await runBatch(
      records(1),
      async () => {
        await delay(150);
        return { records: [], state: [] };
      },
      emptyState,
      options(fast, {
        heartbeat: () => {
          beats++;
          return Promise.resolve();
        },
      }),
    );
    assert.ok(output !== null);
    assert.ok(beats >= 4, `heartbeats during a 150 ms handler at 20 ms intervals: ${beats}`);
    const after = beats;
    await delay(60);
    assert.equal(beats, after, 'no heartbeat once the handler is done');
  });

  it('a failing heartbeat does not fail the batch', async () => {
    const output = await runBatch(
      records(1),
      async () => {
        await delay(60);
        return { records: [], state: [] };
      },
      emptyState,
      options(fast, { heartbeat: () => Promise.reject(new Error('rebalancing')) }),
    );
    assert.ok(output !== null);
  });

  it('back-off is jittered within ±jitter of the exponential delay, and capped', () => {
    const spread = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const ms = backoffMs(3, 100, 10_000, 0.2);
      assert.ok(ms >= 320 && ms <= 480, `${ms} within ±20% of 400`);
      spread.add(ms);
    }
    assert.ok(spread.size > 5, 'delays differ between tries');
    assert.ok(backoffMs(30, 100, 1_000, 0.2) <= 1_200);
  });

  it('fills what a partial policy leaves out with the defaults (undefined does not erase them)', () => {
    const policy = batchPolicyOf({ maxAttempts: 2, retryBaseMs: undefined as unknown as number });
    assert.equal(policy.maxAttempts, 2);
    assert.equal(policy.retryBaseMs, 200);
  });
});

describe('the batch policy counts what it does (metrics)', () => {
  it('records per stage, retried and final failures by code, and dead letters by code', async () => {
    const group = 'metered-stage';
    const at = (name: string, labels: Record<string, string> = {}) =>
      metricTotal(name, { stage: group, ...labels });
    const before = {
      records: await at('lightmem_stage_records_total'),
      retried: await at('lightmem_stage_errors_total', { code: 'storage_unavailable', retryable: 'true' }),
      final: await at('lightmem_stage_errors_total', { code: 'invalid_input', retryable: 'false' }),
      dead: await at('lightmem_dead_letters_total', { code: 'invalid_input' }),
      batches: await at('lightmem_stage_batch_duration_seconds_count'),
    };
    let first = true;
    const output = await runBatch(
      records(3),
      (batch) => {
        if (first) {
          first = false;
          return Promise.reject(new UnavailableError('busy once'));
        }
        if (batch.some((r) => r.offset === 1))
          return Promise.reject(new InvalidInputError('bad turn', 'text'));
        return Promise.resolve({ records: [], state: [] });
      },
      emptyState,
      { ...options(fast), group },
    );
    assert.equal(output?.records.length, 1);
    assert.equal((await at('lightmem_stage_records_total')) - before.records, 3);
    assert.equal((await at('lightmem_stage_batch_duration_seconds_count')) - before.batches, 1);
    assert.equal(
      (await at('lightmem_stage_errors_total', { code: 'storage_unavailable', retryable: 'true' })) -
        before.retried,
      1,
    );
    // The whole batch failed once, then the isolated record: two final failures, one dead letter.
    assert.equal(
      (await at('lightmem_stage_errors_total', { code: 'invalid_input', retryable: 'false' })) - before.final,
      2,
    );
    assert.equal((await at('lightmem_dead_letters_total', { code: 'invalid_input' })) - before.dead, 1);
  });
});
