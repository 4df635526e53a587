import { InvalidInputError } from '../core/errors.js';
import { operatorOf } from '../app/caller.js';
import { systemClock } from '../core/ports/clock.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import type { ConsolidationSummary, DecisionSummary } from '../../workflows/consolidation/activity-types.js';
import { commonOptions, parse, stringOption } from './args.js';
import { openContext } from './context.js';

export const consolidateUsage = `lightmem consolidate --user U [--tenant T] [--dry-run] [--json] [--data-dir D]
  Runs sleep-time consolidation of one user now (embedded: in this process; distributed: a Temporal
  workflow) and prints each decision: update (a new version), supersede, ignore, merge (near-duplicates,
  without an LLM). --dry-run decides and prints but changes nothing; --json prints one JSON object with
  the counts by type and the decisions.`;

function describe(decision: DecisionSummary): string {
  const kind = decision.merge ? 'merge' : decision.op;
  const targets = decision.targetIds.join(', ');
  const detail =
    decision.op === 'update'
      ? ` → ${decision.replacementIds.join(', ')}: ${decision.text ?? ''}`
      : decision.op === 'supersede'
        ? ` superseded by ${decision.replacementIds.join(', ')}`
        : '';
  const problem = decision.problem === null ? '' : ` [problem: ${decision.problem}]`;
  return `${kind.padEnd(9)} ${targets}${detail}\n          because: ${decision.reason}${problem}`;
}

export function printSummary(summary: ConsolidationSummary): void {
  const { counts } = summary;
  console.log(
    `${summary.dryRun ? 'dry run: ' : ''}${summary.tenantId}/${summary.userId}: ${summary.sources} new memories, ` +
      `${summary.targets} targets in ${summary.runs} run(s) by ${summary.policy ?? 'nobody'}; ` +
      `update ${counts.update}, supersede ${counts.supersede}, merge ${counts.merge}, ignore ${counts.ignore}` +
      (summary.problems > 0 ? `, ${summary.problems} unusable answers (dead-lettered)` : '') +
      (summary.skipped > 0 ? `, ${summary.skipped} skipped (changed since planned)` : ''),
  );
  for (const decision of summary.decisions) console.log(describe(decision));
}

export async function consolidateCommand(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    user: { type: 'string' },
    tenant: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(consolidateUsage);
    return 0;
  }
  const user = stringOption(values, 'user');
  if (user === undefined) throw new InvalidInputError(`--user is required\n${consolidateUsage}`, 'user');
  const { config, runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const caller = operatorOf(stringOption(values, 'tenant') ?? config.defaultTenant);
    const summary = await memoryServiceOf(runtime, systemClock).consolidate(caller, {
      userId: user,
      dryRun: values['dry-run'] === true,
    });
    if (values['json'] === true) console.log(JSON.stringify(summary));
    else printSummary(summary);
    return 0;
  } finally {
    await runtime.close();
  }
}
