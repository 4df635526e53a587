import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { OwnerLock } from '../../services/adapters/sqlite/owner-lock.js';
import { LightmemError } from '../../services/core/errors.js';
import { PipelineOwnership, type PipelineRunner } from '../../services/runtime/pipeline-ownership.js';
import type { StageName, StageStatus } from '../../services/runtime/pipeline.js';
import { memoryLogger } from '../support/memory-logger.js';

const dirs: string[] = [];
after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function openLog(): SqliteEventLog {
  const dir = mkdtempSync(join(tmpdir(), 'lightmem-ownership-'));
  dirs.push(dir);
  return SqliteEventLog.open(join(dir, 'log.db'), {
    logger: memoryLogger(),
    clock: { now: () => Date.now() },
  });
}

/** A runner whose pipeline runs until stopped, or fails when `fail` is called. */
function controllableRunner(): PipelineRunner & {
  runs: number;
  fail(error: unknown): void;
  report(stage: StageName, status: StageStatus): void;
} {
  let current: {
    reject: (error: unknown) => void;
    onStatus: (s: StageName, st: StageStatus) => void;
  } | null = null;
  const runner = {
    runs: 0,
    run(signal: AbortSignal, onStatus: (stage: StageName, status: StageStatus) => void): Promise<void> {
      runner.runs++;
      return new Promise<void>((resolve, reject) => {
        current = { reject, onStatus };
        onStatus('compressor', { state: 'running' });
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    },
    fail(error: unknown) {
      current?.reject(error);
    },
    report(stage: StageName, status: StageStatus) {
      current?.onStatus(stage, status);
    },
  };
  return runner;
}

function ownership(
  log: SqliteEventLog,
  runner: PipelineRunner,
  pid: number,
  options: { staleMs?: number; cooldownMs?: number } = {},
): PipelineOwnership {
  return new PipelineOwnership(
    new OwnerLock(log.database, 'embedded-pipeline', options.staleMs ?? 15_000, pid),
    runner,
    {
      clock: { now: () => Date.now() },
      logger: memoryLogger(),
      heartbeatMs: 20,
      takeoverCheckMs: 10,
      failureCooldownMs: options.cooldownMs ?? 60_000,
    },
  );
}

async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** The pid of a process that has exited (as a kill -9'd owner's). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'console.log(process.pid)']);
  return Number(child.stdout.toString().trim());
}

describe('PipelineOwnership', () => {
  it('one process runs the pipeline; another reports it ready from the owner’s published status', async () => {
    const log = openLog();
    const owner = ownership(log, controllableRunner(), process.pid);
    const other = ownership(log, controllableRunner(), process.pid + 100_000);
    try {
      assert.equal(owner.start(), true);
      // process.pid + 100000 is not alive, but it only watches; the live owner keeps the pipeline.
      assert.equal(other.start(), false);
      await until(() => other.health().stages?.['compressor']?.state === 'running', 'the published status');
      assert.deepEqual(
        { ready: other.health().ready, pipeline: other.health().pipeline },
        { ready: true, pipeline: `process ${process.pid}` },
      );
      assert.equal(owner.health().pipeline, 'this process');
    } finally {
      await other.stop();
      await owner.stop();
      await log.close();
    }
  });

  it('a survivor takes over on its own within a check interval when the owner’s process is gone', async () => {
    const log = openLog();
    const lock = new OwnerLock(log.database, 'embedded-pipeline', 15_000, deadPid());
    assert.equal(lock.tryAcquire(Date.now()), true);
    const runner = controllableRunner();
    const survivor = ownership(log, runner, process.pid);
    try {
      // Nobody waits for anything: the survivor notices the dead owner by itself.
      survivor.start();
      await until(() => survivor.isOwner, 'the takeover', 1_000);
      assert.equal(runner.runs, 1);
      assert.equal(survivor.health().ready, true);
    } finally {
      await survivor.stop();
      await log.close();
    }
  });

  it('takes over from a live owner only once its lock goes stale (a hung process)', async () => {
    const log = openLog();
    const hung = new OwnerLock(log.database, 'embedded-pipeline', 150, process.ppid);
    assert.equal(hung.tryAcquire(Date.now()), true);
    const survivor = ownership(log, controllableRunner(), process.pid, { staleMs: 150 });
    try {
      assert.equal(survivor.start(), false);
      const health = survivor.health();
      assert.equal(health.pipeline, `process ${process.ppid}`);
      await until(() => !survivor.health().ready || survivor.isOwner, 'the stale lock');
      await until(() => survivor.isOwner, 'the takeover');
    } finally {
      await survivor.stop();
      await log.close();
    }
  });

  it('a pipeline that fails for good is given up: lock released, health not ready with the reason, taken by another', async () => {
    const log = openLog();
    const runner = controllableRunner();
    const failing = ownership(log, runner, process.pid);
    // Another live process (the test runner's parent stands in for it).
    const other = ownership(log, controllableRunner(), process.ppid);
    try {
      assert.equal(failing.start(), true);
      runner.fail(new LightmemError('conflict', 'consumer group indexer was advanced by another process'));
      await until(() => !failing.isOwner, 'giving up');
      const health = failing.health();
      assert.equal(health.ready, false);
      assert.match(health.reasons.join('\n'), /failed in this process .*advanced by another process/);
      assert.match(health.reasons.join('\n'), /cool-down/);
      // In its cool-down it does not take the pipeline again; another process does.
      assert.equal(other.start(), true);
      await delay(50);
      assert.equal(runner.runs, 1);
      assert.equal(failing.health().ready, true, 'running elsewhere again');
    } finally {
      await other.stop();
      await failing.stop();
      await log.close();
    }
  });

  it('after its cool-down a process takes a pipeline nobody runs again', async () => {
    const log = openLog();
    const runner = controllableRunner();
    const owner = ownership(log, runner, process.pid, { cooldownMs: 100 });
    try {
      owner.start();
      runner.fail(new Error('disk I/O error'));
      await until(() => !owner.isOwner, 'giving up');
      await until(() => owner.isOwner, 'taking it again');
      assert.equal(runner.runs, 2);
    } finally {
      await owner.stop();
      await log.close();
    }
  });

  it('a failed stage in the owner makes every process report not ready', async () => {
    const log = openLog();
    const runner = controllableRunner();
    const owner = ownership(log, runner, process.pid);
    const other = ownership(log, controllableRunner(), process.ppid);
    try {
      owner.start();
      other.start();
      runner.report('indexer', { state: 'failed', error: 'store refused the write' });
      await until(() => other.health().stages?.['indexer']?.state === 'failed', 'the published failure');
      assert.equal(other.health().ready, false);
      assert.match(other.health().reasons.join('\n'), /stage indexer failed: store refused the write/);
      assert.equal(owner.health().ready, false);
    } finally {
      await other.stop();
      await owner.stop();
      await log.close();
    }
  });
});
