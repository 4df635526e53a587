/**
 * What instrumentation costs the pipeline: ingest throughput of LoCoMo conversations through the embedded
 * pipeline (in process, as `lightmem ingest` runs it) with telemetry off, and on (Prometheus metrics
 * recorded, every span exported over OTLP/HTTP to a collector in this process), alternating, each run in a
 * fresh child process and data dir. Prints turns/s per run, the medians and their ratio.
 *
 *   node --import tsx scripts/telemetry-overhead.ts [--data ../shared/data/locomo-dev.json] [--samples 2]
 *     [--copies 1] [--rounds 3] [--parts both|metrics|tracing]
 *
 * The embedder is what the environment says (LIGHTMEM_EMBEDDER=none: lexical only, where the pipeline's own
 * work, and so the instrumentation's share, is largest).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startOtlpReceiver } from '../test/support/otlp-receiver.js';

const { values } = parseArgs({
  options: {
    data: {
      type: 'string',
      default: join(import.meta.dirname, '..', '..', 'shared', 'data', 'locomo-dev.json'),
    },
    samples: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'string' },
    traces: { type: 'string' },
    copies: { type: 'string', default: '1' },
    /** What is on in the `on` runs: both (default), or only `metrics` or `tracing`. */
    parts: { type: 'string', default: 'both' },
  },
});

const copies = Number(values.copies);
const parts = values.parts;

interface RunResult {
  readonly turns: number;
  readonly seconds: number;
}

async function child(mode: 'on' | 'off', file: string, traces: string | undefined): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `lightmem-overhead-${mode}-`));
  try {
    const { loadConfig } = await import('../services/runtime/load-config.js');
    const { stderrLogger } = await import('../services/runtime/stderr-logger.js');
    const { EmbeddedRuntime } = await import('../services/runtime/embedded-runtime.js');
    const { Ingestion } = await import('../services/app/ingestion.js');
    const { loadDataset } = await import('../services/ingest/index.js');
    const { systemClock } = await import('../services/core/ports/clock.js');
    const config = loadConfig({
      env: process.env,
      overrides: {
        dataDir: dir,
        ...(mode === 'on' && parts !== 'metrics' ? { telemetry: { tracesEndpoint: traces ?? null } } : {}),
      },
    });
    const logger = stderrLogger('warn');
    let tracing: { shutdown(): Promise<void> } | null = null;
    if (mode === 'on') {
      if (parts !== 'tracing') await import('../services/telemetry/metrics.js');
      tracing = await (
        await import('../services/telemetry/tracing-setup.js')
      ).startTracing(config, 'bench', logger);
    }
    const runtime = await EmbeddedRuntime.open(config, { logger, clock: systemClock });
    try {
      runtime.startPipeline();
      const started = performance.now();
      // The conversations `copies` times over, each copy a tenant of its own: a run long enough to time.
      let turns = 0;
      for (let copy = 0; copy < copies; copy++) {
        const report = await new Ingestion(runtime.eventLog, systemClock).ingest(
          loadDataset(file, 'locomo', { tenantId: `bench-${copy}` }),
          { source: file, endSessions: true },
        );
        turns += report.accepted;
      }
      await runtime.waitForDrain();
      const seconds = (performance.now() - started) / 1000;
      console.log(JSON.stringify({ turns, seconds } satisfies RunResult));
    } finally {
      await runtime.close();
      await tracing?.shutdown();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(mode: 'on' | 'off', file: string, traces: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const script = join(import.meta.dirname, 'telemetry-overhead.ts');
    const proc = spawn(
      process.execPath,
      [
        ...['--import', 'tsx', script, '--child', mode, '--data', file, '--traces', traces],
        ...['--copies', String(copies), '--parts', parts],
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    proc.once('error', reject);
    proc.once('close', (code) => {
      if (code !== 0) reject(new Error(`the ${mode} run exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as RunResult);
    });
  });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

if (values.child === 'on' || values.child === 'off') {
  await child(values.child, values.data, values.traces);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'lightmem-overhead-'));
  const subset = join(dir, 'locomo.json');
  const samples = (JSON.parse(readFileSync(values.data, 'utf8')) as unknown[]).slice(
    0,
    Number(values.samples),
  );
  writeFileSync(subset, JSON.stringify(samples));
  const receiver = await startOtlpReceiver();
  const rates: Record<'off' | 'on', number[]> = { off: [], on: [] };
  try {
    for (let round = 1; round <= Number(values.rounds); round++) {
      for (const mode of ['off', 'on'] as const) {
        const result = await runChild(mode, subset, receiver.url);
        const rate = result.turns / result.seconds;
        rates[mode].push(rate);
        console.log(
          `round ${round} ${mode.padEnd(3)}: ${result.turns} turns in ${result.seconds.toFixed(2)} s = ${rate.toFixed(1)} turns/s`,
        );
      }
    }
    const off = median(rates.off);
    const on = median(rates.on);
    console.log(
      `median turns/s: off ${off.toFixed(1)}, on ${on.toFixed(1)}; on/off = ${(on / off).toFixed(3)} (cost ${((1 - on / off) * 100).toFixed(1)}%); spans received: ${receiver.spans.length}`,
    );
  } finally {
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
