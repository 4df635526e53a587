import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { operatorOf } from '../app/caller.js';
import type { MemoryService } from '../app/memory-service.js';
import type { ReplayStatus } from '../app/replays.js';
import type { VersionDiff } from '../app/version-diff.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import type { Runtime } from '../runtime/runtime.js';
import { commonOptions, parse, stringOption, timeOption } from './args.js';
import { openContext } from './context.js';
import { ProgressBar } from './progress.js';

export const replayUsage = `lightmem replay [--tenant T[,T…]] [--since TIME] [--switch] [--json]
  Re-derives memories from the raw log with the current configuration into a new pipeline version (its
  own consumer groups and store) beside the one serving reads, with a progress bar; run it again after a
  crash and it resumes. --switch then routes reads to it (atomically; the old version stays). --since:
  derive again only the sessions active since TIME; the memories of the others are carried over.
lightmem replay status [--json]
lightmem replay diff <version> [--against V] [--tenant T] [--json]
  Memories added, removed and changed against the version serving reads (or --against).
lightmem replay switch <version> [--tenant T[,T…]]
lightmem replay drop <version>
  Deletes a version that serves no reads.`;

const options = {
  ...commonOptions,
  tenant: { type: 'string' },
  since: { type: 'string' },
  against: { type: 'string' },
  switch: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

export async function replayCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, options);
  if (values['help'] === true) {
    console.log(replayUsage);
    return 0;
  }
  const [action, version] = positionals;
  const json = values['json'] === true;
  const tenants = tenantList(stringOption(values, 'tenant'));
  const { runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const service = memoryServiceOf(runtime, systemClock);
    // The operator at the machine: every tenant unless told (`tenants` narrows what is replayed or switched).
    const operator = operatorOf(tenants?.[0] ?? runtime.config.defaultTenant);
    const named = (): string => {
      if (version === undefined)
        throw new InvalidInputError(`replay ${action ?? ''} needs a version\n${replayUsage}`, 'version');
      return version;
    };
    switch (action) {
      case undefined: {
        const started = await service.startReplay(operator, { tenants, since: timeOption(values, 'since') });
        const built = await waitUntilBuilt(service, runtime, started.version, json);
        const done =
          values['switch'] === true
            ? await service.switchReplay(operator, { version: built.version, tenants })
            : built;
        print(json, done, statusLine(done));
        return 0;
      }
      case 'status': {
        const versions = await service.replays(operator);
        print(json, versions, versions.map(statusLine).join('\n'));
        return 0;
      }
      case 'diff': {
        const diff = await service.diffReplay(operator, {
          version: named(),
          against: stringOption(values, 'against'),
        });
        print(json, diff, diffText(diff));
        return 0;
      }
      case 'switch': {
        const switched = await service.switchReplay(operator, { version: named(), tenants });
        print(json, switched, statusLine(switched));
        return 0;
      }
      case 'drop': {
        const dropped = await service.dropReplay(operator, { version: named() });
        print(json, dropped, statusLine(dropped));
        return 0;
      }
      default:
        throw new InvalidInputError(`unknown replay action ${action}\n${replayUsage}`, 'action');
    }
  } finally {
    await runtime.close();
  }
}

function tenantList(value: string | undefined): string[] | null {
  if (value === undefined) return null;
  const tenants = value
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  if (tenants.length === 0) throw new InvalidInputError('--tenant names no tenant', 'tenant');
  return tenants;
}

/**
 * Takes part in running the pipeline (this process runs the new version when no other process runs the
 * pipeline, e.g. a `serve`) and shows the version's progress until it has caught up with the raw log.
 */
async function waitUntilBuilt(
  service: MemoryService,
  runtime: Runtime,
  version: string,
  quiet: boolean,
): Promise<ReplayStatus> {
  if (!runtime.startPipeline() && !quiet) {
    // Distributed mode, or another process owns the pipeline: say who builds it, in case nothing does.
    process.stderr.write(`${version} is built by ${runtime.pipelineDescription}\n`);
  }
  const bar = new ProgressBar(`replay ${version}`, process.stderr, quiet);
  const operator = operatorOf(runtime.config.defaultTenant);
  for (;;) {
    await runtime.replay.markCaughtUp();
    const status = await service.replay(operator, { version });
    bar.update(
      status.copied,
      Math.max(status.rawRecords, status.copied),
      `raw records, ${status.pending} in the stages`,
    );
    if (status.builtAt !== null) {
      bar.finish();
      return status;
    }
    await sleep(250);
  }
}

function print(json: boolean, value: unknown, text: string): void {
  console.log(json ? JSON.stringify(value) : text);
}

function statusLine(status: ReplayStatus): string {
  const state =
    status.droppedAt !== null
      ? `dropped ${status.droppedAt}`
      : status.builtAt !== null
        ? `built ${status.builtAt}`
        : `building (${status.copied}/${status.rawRecords} raw records, ${status.pending} pending)`;
  const serves = status.serves.length === 0 ? '' : `  serves ${status.serves.join(',')}`;
  const since = status.since === null ? '' : `  since ${status.since}`;
  return `${status.version}  tenants ${status.tenants?.join(',') ?? 'all'}${since}  ${state}${serves}`;
}

function diffText(diff: VersionDiff): string {
  const lines = [
    `${diff.from} → ${diff.to} (tenants ${diff.tenants.join(', ')}): ${diff.before} → ${diff.after} memories`,
    `  unchanged ${diff.unchanged}, changed ${diff.changed}, added ${diff.added}, removed ${diff.removed} (memories grouped by the turns they cite)`,
  ];
  for (const kind of ['changed', 'added', 'removed'] as const) {
    for (const sample of diff.samples[kind]) {
      lines.push(
        `  ${kind} ${sample.userId}: ${sample.before ?? ''}${sample.before !== undefined && sample.after !== undefined ? ' → ' : ''}${sample.after ?? ''}`,
      );
    }
  }
  return lines.join('\n');
}
