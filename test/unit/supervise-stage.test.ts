import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  runStages,
  superviseStage,
  type StageDefinition,
  type StageStatus,
} from '../../services/runtime/pipeline.js';
import { LightmemError, UnavailableError } from '../../services/core/errors.js';
import type { EventLog } from '../../services/core/ports/event-log.js';
import { Topics } from '../../services/core/model/topics.js';
import { memoryLogger } from '../support/memory-logger.js';

/** A stage whose consumer loop fails with the given errors, one per run, then runs until aborted. */
function failingStage(
  failures: Error[],
  name: StageDefinition['name'] = 'segmenter',
): StageDefinition & { runs: number } {
  const stage = {
    name,
    input: Topics.compressed,
    batchSize: 8,
    runs: 0,
    consume: async (_log: EventLog, options: { signal: AbortSignal }) => {
      stage.runs++;
      const failure = failures.shift();
      if (failure !== undefined) throw failure;
      if (options.signal.aborted) return;
      await new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve()));
    },
  };
  return stage;
}

const log = {} as EventLog;

describe('superviseStage', () => {
  it('restarts the consumer loop after retryable failures (a broker outage) and logs each restart', async () => {
    const logger = memoryLogger();
    const stage = failingStage([
      new UnavailableError('broker gone'),
      new UnavailableError('broker still gone'),
    ]);
    const stop = new AbortController();
    const running = superviseStage(log, stage, {
      signal: stop.signal,
      logger,
      restartBaseMs: 1,
    });
    while (stage.runs < 3) await new Promise((r) => setTimeout(r, 1));
    stop.abort();
    await running;
    assert.equal(stage.runs, 3);
    const restarts = logger.entries.filter((e) => e.message === 'stage failed; restarting it');
    assert.deepEqual(
      restarts.map((e) => e.fields?.['attempt']),
      [1, 2],
    );
    assert.match(String(restarts[0]?.fields?.['error']), /broker gone/);
  });

  it('ends with a non-retryable failure (a fenced instance) instead of restarting', async () => {
    const logger = memoryLogger();
    const fenced = new LightmemError('conflict', 'another instance took over');
    const stage = failingStage([fenced]);
    await assert.rejects(
      superviseStage(log, stage, { signal: new AbortController().signal, logger }),
      (error) => error === fenced,
    );
    assert.equal(stage.runs, 1);
    assert.ok(logger.entries.some((e) => e.level === 'error' && e.message === 'stage stopped'));
  });

  it('an abort during the backoff ends the supervision at once', async () => {
    const stage = failingStage([new UnavailableError('down')]);
    const stop = new AbortController();
    const running = superviseStage(log, stage, {
      signal: stop.signal,
      logger: memoryLogger(),
      restartBaseMs: 60_000,
    });
    while (stage.runs < 1) await new Promise((r) => setTimeout(r, 1));
    const started = Date.now();
    stop.abort();
    await running;
    assert.ok(Date.now() - started < 1_000);
    assert.equal(stage.runs, 1);
  });

  it('a failure while stopping is logged, not thrown', async () => {
    const logger = memoryLogger();
    const stop = new AbortController();
    const stage = {
      name: 'indexer' as const,
      input: Topics.memories,
      batchSize: 8,
      consume: async (_log: EventLog, options: { signal: AbortSignal }) => {
        await new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve()));
        throw new LightmemError('internal', 'disconnect failed');
      },
    };
    const running = superviseStage(log, stage, { signal: stop.signal, logger });
    stop.abort();
    await running;
    assert.ok(logger.entries.some((e) => e.message === 'stage failed while stopping'));
  });

  it('reports each start, restart and failure of a stage (what health answers show)', async () => {
    const statuses: [string, StageStatus][] = [];
    const stage = failingStage([new UnavailableError('store busy'), new LightmemError('conflict', 'fenced')]);
    await assert.rejects(
      superviseStage(log, stage, {
        signal: new AbortController().signal,
        logger: memoryLogger(),
        restartBaseMs: 1,
        onStatus: (name, status) => statuses.push([name, status]),
      }),
    );
    assert.deepEqual(
      statuses.map(([name, status]) => `${name}:${status.state}`),
      ['segmenter:running', 'segmenter:restarting', 'segmenter:running', 'segmenter:failed'],
    );
  });
});

describe('runStages', () => {
  it('stops every stage when one fails for good, and throws that failure once all have stopped', async () => {
    const healthy = failingStage([], 'compressor');
    const broken = failingStage(
      [new LightmemError('storage_corrupt', 'database disk image is malformed')],
      'indexer',
    );
    const stopping = new AbortController();
    await assert.rejects(
      runStages(log, [healthy, broken], { signal: stopping.signal, logger: memoryLogger() }),
      /malformed/,
    );
    // The healthy stage was stopped (its loop returned), not left running behind a dead one.
    assert.equal(healthy.runs, 1);
    assert.equal(stopping.signal.aborted, false);
  });
});
