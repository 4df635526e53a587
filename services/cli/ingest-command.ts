import { existsSync } from 'node:fs';
import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { Ingestion } from '../app/ingestion.js';
import { loadDataset, type DatasetFormat } from '../ingest/index.js';
import { commonOptions, parse, stringOption } from './args.js';
import { openContext } from './context.js';
import { ProgressBar } from './progress.js';

const formats: readonly DatasetFormat[] = ['locomo', 'longmemeval', 'jsonl'];

export const ingestUsage = `lightmem ingest <file> --format locomo|longmemeval|jsonl [--tenant T] [--data-dir D] [--json]
  Appends the file's turns to the log, waits until the pipeline has processed them, prints counts.
  Idempotent: ingesting the same file again changes nothing. Invalid items are reported with their line and
  field and dead-lettered (see lightmem stats); the other items are processed.`;

export async function ingestCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...commonOptions,
    format: { type: 'string' },
    tenant: { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (values['help'] === true) {
    console.log(ingestUsage);
    return 0;
  }
  const file = positionals[0];
  if (file === undefined) throw new InvalidInputError(`missing <file>\n${ingestUsage}`, 'file');
  if (!existsSync(file)) throw new InvalidInputError(`no such file: ${file}`, 'file');
  const format = stringOption(values, 'format') ?? (file.endsWith('.jsonl') ? 'jsonl' : undefined);
  if (format === undefined || !formats.includes(format as DatasetFormat)) {
    throw new InvalidInputError(`--format must be one of ${formats.join(', ')}`, 'format');
  }
  const quiet = values['quiet'] === true || values['json'] === true;
  const { config, runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const started = performance.now();
    const tenant = stringOption(values, 'tenant') ?? (format === 'jsonl' ? undefined : config.defaultTenant);
    const ownsPipeline = runtime.startPipeline();
    const reading = new ProgressBar('reading   ', process.stderr, quiet);
    const report = await new Ingestion(runtime.eventLog, systemClock).ingest(
      loadDataset(file, format as DatasetFormat, tenant === undefined ? {} : { tenantId: tenant }),
      {
        source: file,
        endSessions: true,
        flushAtEnd: !config.summarizer.flushAtSessionEnd,
        // Beside a busy server, wait for the log rather than fail (about a minute in all).
        appendAttempts: 15,
        onProgress: (r) =>
          reading.update(
            r.accepted + r.duplicates + r.rejected,
            r.accepted + r.duplicates + r.rejected,
            'items',
          ),
      },
    );
    reading.finish();
    const appendedMs = performance.now() - started;
    const processing = new ProgressBar('processing', process.stderr, quiet);
    await runtime.waitForDrain({
      onProgress: (lags) => {
        const done = lags.reduce((sum, lag) => sum + lag.committed, 0);
        const total = lags.reduce((sum, lag) => sum + lag.end, 0);
        processing.update(done, total, 'records');
      },
    });
    processing.finish();
    const totalMs = performance.now() - started;
    const stats = await runtime.store.stats();
    const summary = {
      file,
      format,
      accepted: report.accepted,
      duplicates: report.duplicates,
      rejected: report.rejected,
      sessionEnds: report.sessionEnds,
      memories: { live: stats.live, superseded: stats.superseded },
      appendSeconds: round(appendedMs / 1000),
      totalSeconds: round(totalMs / 1000),
      pipeline: ownsPipeline ? 'this process' : runtime.pipelineDescription,
      errors: report.errors,
    };
    if (values['json'] === true) {
      console.log(JSON.stringify(summary));
    } else {
      for (const error of report.errors.slice(0, 50)) {
        console.error(
          `error: ${file}${error.line === null ? ` ${error.label}` : `:${error.line}`}: ${error.field}: ${error.message}`,
        );
      }
      if (report.errors.length > 50)
        console.error(`… and ${report.errors.length - 50} more (lightmem stats lists the dead letters)`);
      console.log(
        `ingested ${file}: ${report.accepted} events appended, ${report.duplicates} already present, ${report.rejected} rejected, ` +
          `${report.sessionEnds} session ends; store holds ${stats.live} live memories (${stats.superseded} superseded); ` +
          `${summary.totalSeconds} s`,
      );
    }
    return report.rejected > 0 ? 2 : 0;
  } finally {
    await runtime.close();
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
