import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { InvalidInputError } from '../core/errors.js';
import { loadDataset } from '../ingest/index.js';
import type { TurnInput } from '../ingest/index.js';
import { locomoQuestions } from '../bench/locomo-questions.js';
import { runLoadBench } from '../bench/load-bench.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { commandConfig } from './context.js';
import { ProgressBar } from './progress.js';
import { systemClock } from '../core/ports/clock.js';
import { openTenantDirectory } from '../runtime/tenant-directory-setup.js';
import { loadBenchUsage } from './bench-usage.js';

/** The per-key rate limit of the benchmark's server: high enough never to answer 429. */
const benchRateLimit = 100_000;

export async function loadBench(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    data: { type: 'string' },
    'idle-queries': { type: 'string' },
    'query-interval-ms': { type: 'string' },
    limit: { type: 'string' },
    clients: { type: 'string' },
    'throughput-seconds': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(loadBenchUsage);
    return 0;
  }
  const data = stringOption(values, 'data');
  if (data === undefined) throw new InvalidInputError(`--data is required\n${loadBenchUsage}`, 'data');
  const config = commandConfig(values);
  const events: TurnInput[] = [];
  for await (const item of loadDataset(data, 'locomo', { tenantId: 'bench' }))
    if (item.result.ok) events.push(item.result.event);
  const questions = await locomoQuestions(data);
  const work = mkdtempSync(join(tmpdir(), 'lightmem-bench-load-'));
  const configFile = stringOption(values, 'config');
  // Two tenants with a key each, made before the server starts (it then creates no default tenant).
  const directory = await openTenantDirectory({ ...config, dataDir: work, mode: 'embedded' }, systemClock);
  const apiKeys = { a: '', b: '' };
  try {
    for (const [side, tenantId] of [
      ['a', 'bench-a'],
      ['b', 'bench-b'],
    ] as const) {
      await directory.createTenant(tenantId);
      apiKeys[side] = (await directory.createKey({ tenantId, scopes: ['read', 'write'] })).apiKey;
    }
  } finally {
    await directory.close();
  }
  const server = spawn(
    process.execPath,
    [
      ...process.execArgv,
      process.argv[1] ?? '',
      'serve',
      '--port',
      '0',
      '--data-dir',
      work,
      ...(configFile === undefined ? [] : ['--config', configFile]),
    ],
    {
      // The server uses the models of this data dir (no second download into the fresh one).
      env: {
        ...process.env,
        LIGHTMEM_MODELS_DIR: resolve(config.models.dir ?? join(config.dataDir, 'models')),
        // The benchmark measures the server's capacity, not the per-key limit (50 requests/s by default).
        LIGHTMEM_RATE_LIMIT: String(benchRateLimit),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const quiet = values['json'] === true;
  const bars = new Map<string, ProgressBar>();
  try {
    const baseUrl = await new Promise<string>((resolveUrl, reject) => {
      let buffered = '';
      server.stderr.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const match = /"url":"(http:\/\/[^"]+)"/.exec(buffered);
        if (match?.[1] !== undefined) resolveUrl(match[1]);
      });
      server.once('exit', (code) => reject(new Error(`lightmem serve exited (${code}):\n${buffered}`)));
    });
    const report = await runLoadBench({
      baseUrl,
      events,
      questions,
      apiKeys,
      concurrentClients: intOption(values, 'clients', 4),
      throughputSeconds: intOption(values, 'throughput-seconds', 10),
      idleQueries: intOption(values, 'idle-queries', 300),
      queryIntervalMs: intOption(values, 'query-interval-ms', 50),
      limit: intOption(values, 'limit', 10),
      onProgress: (phase, done, total) => {
        let bar = bars.get(phase);
        if (bar === undefined) {
          for (const other of bars.values()) other.finish();
          bar = new ProgressBar(phase.padEnd(14), process.stderr, quiet);
          bars.set(phase, bar);
        }
        bar.update(done, total, phase.startsWith('search') ? 'queries' : 'events');
      },
    });
    for (const bar of bars.values()) bar.finish();
    if (!quiet) {
      const r = report;
      const line = (name: string, l: typeof r.searchIdle): string =>
        `${name} p50 ${l.p50Ms} ms  p95 ${l.p95Ms} ms  p99 ${l.p99Ms} ms  max ${l.maxMs} ms  (${l.count})`;
      console.log(
        `events per backlog: ${r.events} (authenticated requests, one API key per tenant, per-key rate limit raised to ${benchRateLimit}/s)`,
      );
      console.log(
        `drain idle:        ${r.ingestIdle.acceptedPerSecond} events/s accepted, ${r.ingestIdle.seconds} s = ${r.ingestIdle.eventsPerSecond} events/s processed (no searches)`,
      );
      console.log(
        `drain under load:  ${r.ingestUnderLoad.acceptedPerSecond} events/s accepted, ${r.ingestUnderLoad.seconds} s = ${r.ingestUnderLoad.eventsPerSecond} events/s processed (searches running)`,
      );
      const t = r.searchThroughput;
      console.log(
        `search throughput: ${t.searchesPerSecond} searches/s (${t.clients} clients, ${t.searches} in ${t.seconds} s), p95 ${t.latency.p95Ms} ms`,
      );
      console.log(line('search idle:      ', r.searchIdle));
      console.log(line('search under load:', r.searchUnderLoad));
      console.log(`p95 under load / idle: ${r.p95Ratio}`);
      console.log(line('healthz idle:      ', r.healthIdle));
      console.log(line('healthz under load:', r.healthUnderLoad));
      console.log(`non-2xx answers: ${r.errors} of ${r.requests} requests (error rate ${r.errorRate})`);
      if (r.firstError !== null) console.log(`first failure: ${r.firstError}`);
    }
    console.log(JSON.stringify({ benchmark: 'load', data, ...report }));
    return 0;
  } finally {
    if (server.exitCode === null) {
      const exited = new Promise((done) => server.once('exit', done));
      server.kill('SIGTERM');
      await exited;
    }
    rmSync(work, { recursive: true, force: true });
  }
}
