import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import type { LightmemConfig } from '../core/config.js';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import { DistributedRuntime, adminInit, stageNames } from '../runtime/distributed-runtime.js';
import { runDistributedBench } from '../bench/distributed-bench.js';
import { commonOptions, parse, stringOption } from './args.js';
import { commandConfig, commandLogger } from './context.js';
import { ProgressBar } from './progress.js';
import { distributedBenchUsage } from './bench-usage.js';

export async function distributedBench(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, { ...commonOptions, data: { type: 'string' }, json: { type: 'boolean' } });
  if (values['help'] === true) {
    console.log(distributedBenchUsage);
    return 0;
  }
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${distributedBenchUsage}`, 'data');
  const base = commandConfig(values);
  const logger = commandLogger(values, base, { logLevel: 'warn' });
  const work = mkdtempSync(join(tmpdir(), 'lightmem-bench-distributed-'));
  const run = randomUUID().slice(0, 8);
  const embeddedConfig: LightmemConfig = { ...base, mode: 'embedded', dataDir: join(work, 'embedded') };
  const distributedConfig: LightmemConfig = {
    ...base,
    mode: 'distributed',
    kafka: { ...base.kafka, topicPrefix: `${base.kafka.topicPrefix}bench-${run}.` },
    elasticsearch: { ...base.elasticsearch, indexPrefix: `${base.elasticsearch.indexPrefix}bench-${run}-` },
  };
  await adminInit(distributedConfig, { logger, clock: systemClock });
  // The stage services, started like a user would (same CLI, same Node flags, the same configuration file
  // and environment, so credentials are never written anywhere), on this run's topics and indices, loading
  // their models while the embedded side runs.
  const userConfig = stringOption(values, 'config');
  const children: ChildProcess[] = stageNames.map((stage) =>
    spawn(
      process.execPath,
      [
        ...process.execArgv,
        process.argv[1] ?? '',
        'service',
        stage,
        ...(userConfig === undefined ? [] : ['--config', userConfig]),
        '--data-dir',
        base.dataDir,
        '--mode',
        'distributed',
        '--log-level',
        'warn',
      ],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: {
          ...process.env,
          LIGHTMEM_KAFKA_TOPIC_PREFIX: distributedConfig.kafka.topicPrefix,
          LIGHTMEM_ES_INDEX_PREFIX: distributedConfig.elasticsearch.indexPrefix,
        },
      },
    ),
  );
  const embedded = await EmbeddedRuntime.open(embeddedConfig, { logger, clock: systemClock });
  const distributed = await DistributedRuntime.open(distributedConfig, { logger, clock: systemClock });
  const quiet = values['json'] === true;
  const bars = new Map<string, ProgressBar>();
  try {
    const report = await runDistributedBench(
      {
        runtime: embedded,
        start: async () => {
          embedded.startPipeline();
        },
      },
      {
        runtime: distributed,
        start: async () => {
          // Measure processing, not process start-up: wait until every stage's consumer group is stable.
          for (const stage of stageNames) {
            while ((await distributed.eventLog.stableMembers(stage)) < 1) {
              if (children.some((child) => child.exitCode !== null))
                throw new Error('a stage service exited during start-up');
              await sleep(200);
            }
          }
        },
      },
      {
        file: data,
        tenantId: base.defaultTenant,
        clock: systemClock,
        logger,
        onProgress: (side, lags) => {
          let bar = bars.get(side);
          if (bar === undefined) {
            bar = new ProgressBar(side.padEnd(11), process.stderr, quiet);
            bars.set(side, bar);
          }
          bar.update(
            lags.reduce((s, l) => s + l.committed, 0),
            lags.reduce((s, l) => s + l.end, 0),
            'records',
          );
        },
      },
    );
    for (const bar of bars.values()) bar.finish();
    if (values['json'] === true) {
      console.log(JSON.stringify(report));
    } else {
      const r = report;
      console.log(
        `embedded:    ${r.embedded.turns} turns in ${r.embedded.seconds} s = ${r.embedded.turnsPerSecond} turns/s, ${r.embedded.memories} memories`,
      );
      console.log(
        `distributed: ${r.distributed.turns} turns in ${r.distributed.seconds} s = ${r.distributed.turnsPerSecond} turns/s, ${r.distributed.memories} memories`,
      );
      console.log(`throughput ratio distributed/embedded: ${r.throughputRatio}`);
      console.log(
        `same memory ids: ${r.sameMemoryIds} (only embedded ${r.onlyEmbedded}, only distributed ${r.onlyDistributed})`,
      );
      console.log(
        `search over ${r.questions} questions: top-10 overlap ${r.top10Overlap}, identical top 10 ${r.identicalTop10}`,
      );
      console.log(
        `gold turn in top 10 (${r.goldFound.scored} scored): sqlite ${r.goldFound.embedded}, elasticsearch ${r.goldFound.distributed}, same outcome ${r.goldFound.agree}`,
      );
      const l = r.searchLatency;
      console.log(
        `search latency ms p50/p95: sqlite ${l.sqlite.p50Ms}/${l.sqlite.p95Ms}, elasticsearch ${l.elasticsearch.p50Ms}/${l.elasticsearch.p95Ms}`,
      );
    }
    return 0;
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(
      children.map((child) =>
        child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : Promise.resolve(),
      ),
    );
    await embedded.close();
    await distributed.close();
  }
}
