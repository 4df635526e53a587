import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { collect, locomoFile, repoRoot, spawnCli, type CliResult } from '../../support/cli.js';
import type { MemoryStore } from '../../../services/core/ports/memory-store.js';
import { memoryIds } from '../../../services/bench/distributed-bench.js';
import type { LightmemConfigInput } from '../../../services/core/config.js';
import { withTimeout } from '../../../services/core/deadline.js';
import { integrationEmbedder, integrationModelsDir } from './models.js';
import { servers } from './servers.js';

/** Distributed-mode settings of one test run: its own topic prefix and index prefix on the shared servers. */
export function distributedConfig(label: string, extra: LightmemConfigInput = {}): LightmemConfigInput {
  const id = randomUUID().slice(0, 8);
  return {
    ...extra,
    mode: 'distributed',
    kafka: { brokers: servers.kafkaBrokers, topicPrefix: `t-${label}-${id}.`, partitions: 3 },
    registry: { url: servers.registryUrl },
    elasticsearch: { node: servers.elasticsearchUrl, indexPrefix: `t-${label}-${id}-` },
    temporal: { address: servers.temporalAddress, taskQueue: `t-${label}-${id}` },
    // Entity workflows are named by tenant and user only: test runs sharing the dev server would meet in
    // them. Tests run consolidation themselves (`lightmem consolidate`: a workflow of its own per run).
    consolidation: { enabled: false, ...extra.consolidation },
  };
}

/** Environment of a CLI child process using the real embedder from the integration models folder. */
export function modelEnv(): Record<string, string> {
  return {
    LIGHTMEM_EMBEDDER: integrationEmbedder,
    LIGHTMEM_MODELS_DIR: integrationModelsDir,
    LIGHTMEM_AUTO_FETCH: '0',
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
  };
}

export function writeConfig(dir: string, name: string, config: LightmemConfigInput): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/** The first `samples` conversations of the LoCoMo dev file, as a LoCoMo file of their own. */
export function locomoSubset(dir: string, samples: number): string {
  const data = JSON.parse(readFileSync(locomoFile, 'utf8')) as unknown[];
  const file = join(dir, `locomo-${samples}.json`);
  writeFileSync(file, JSON.stringify(data.slice(0, samples)));
  return file;
}

/** Every stage process's whole log, kept after the run (one file per run label and stage). */
export const stageLogDir = join(repoRoot, '.cache', 'test-logs');

export const stages = ['compressor', 'segmenter', 'summarizer', 'indexer', 'applier'] as const;
export type Stage = (typeof stages)[number];

/** One `lightmem service <stage>` child process, restartable, with its output kept for failure messages. */
export class StageProcess {
  private child: ChildProcess | null = null;
  private output = '';
  private exited: Promise<CliResult> | null = null;

  constructor(
    /** A stage, or the consolidator (a Temporal worker). */
    readonly stage: Stage | 'consolidator',
    private readonly configFile: string,
    private readonly env: Record<string, string>,
  ) {}

  start(): void {
    // Several services on one machine: each one's ops endpoints on a free port of its own.
    const child = spawnCli(['service', this.stage, '--config', this.configFile, '--log-level', 'warn'], {
      LIGHTMEM_OPS_PORT: '0',
      ...this.env,
    });
    const logFile = join(stageLogDir, `${basename(this.configFile, '.json')}-${this.stage}.log`);
    mkdirSync(stageLogDir, { recursive: true });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
      appendFileSync(logFile, chunk);
    });
    this.exited = collect(child);
    this.child = child;
  }

  /** kill -9: no shutdown code runs. */
  async kill9(): Promise<void> {
    const exited = this.exited;
    this.child?.kill('SIGKILL');
    await exited;
    this.child = null;
  }

  /**
   * SIGTERM: the graceful stop (finish the batch, commit, leave the group). The service exits by itself after
   * its grace period; should even that fail, SIGKILL after `killAfterMs` so no test run waits forever.
   */
  async stop(killAfterMs = 60_000): Promise<CliResult | null> {
    const exited = this.exited;
    const child = this.child;
    if (child === null || exited === null) return null;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      console.error(`# ${this.stage} did not stop within ${killAfterMs / 1000} s of SIGTERM: SIGKILL`);
      child.kill('SIGKILL');
    }, killAfterMs);
    const started = Date.now();
    try {
      return await exited;
    } finally {
      const seconds = (Date.now() - started) / 1000;
      if (seconds > 10) console.error(`# ${this.stage} took ${seconds.toFixed(1)} s to stop after SIGTERM`);
      clearTimeout(timer);
      this.child = null;
    }
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get log(): string {
    return this.output;
  }
}

export async function startStages(
  configFile: string,
  env: Record<string, string>,
): Promise<Map<Stage, StageProcess>> {
  const processes = new Map<Stage, StageProcess>();
  for (const stage of stages) {
    const process = new StageProcess(stage, configFile, env);
    process.start();
    processes.set(stage, process);
  }
  return processes;
}

export async function stopStages(processes: Map<Stage, StageProcess>): Promise<void> {
  await Promise.all([...processes.values()].map((p) => p.stop()));
}

/** `tsx infra/cli.ts <command> <server>`: the project's own scripts stop and start the real servers. */
export async function infra(command: 'up' | 'down', server: string): Promise<void> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'infra/cli.ts'), command, server],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const result = await collect(child);
  const said = `${result.stdout}${result.stderr}`.trim();
  if (said !== '') console.error(said.replace(/^/gm, '# '));
  assert.equal(result.code, 0, `infra ${command} ${server} failed:\n${result.stderr}`);
}

/** Every memory id of a tenant (live and superseded), sorted. */
export async function allMemoryIds(store: MemoryStore, tenantId = 'default'): Promise<string[]> {
  return [...(await memoryIds(store, tenantId))].sort();
}

/**
 * Polls `condition` until it holds; fails after `timeoutMs` with `what` (a function is called then, so the
 * message can tell what was last seen).
 */
export async function waitUntil(
  condition: () => Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 300_000,
): Promise<void> {
  let expired = false;
  await withDeadline(
    (async () => {
      while (!expired && !(await condition())) await sleep(50);
    })(),
    timeoutMs,
    async () => {
      expired = true;
      return `timed out after ${timeoutMs / 1000} s waiting for ${typeof what === 'string' ? what : what()}`;
    },
  );
}

/** `work`, or a failure with `describe()`'s account of the situation if it has not settled within `ms`. */
export async function withDeadline<T>(
  work: Promise<T>,
  ms: number,
  describe: () => Promise<string>,
): Promise<T> {
  let account: Promise<string> | undefined;
  try {
    return await withTimeout(work, ms, () => {
      account = describe().catch((error: unknown) => `(no account: ${String(error)})`);
      return new Error('deadline');
    });
  } catch (error) {
    if (account === undefined) throw error;
    throw new Error(await account);
  }
}
