import { InvalidInputError, LightmemError } from '../core/errors.js';
import { historyView } from '../app/memory-history.js';
import { operatorOf } from '../app/caller.js';
import { systemClock } from '../core/ports/clock.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import { commonOptions, parse, stringOption } from './args.js';
import { openContext } from './context.js';

export const historyUsage = `lightmem history <memory id> [--user U] [--tenant T] [--json] [--data-dir D]
  Every version of a memory, oldest first, with the decision that made and closed each (update, supersede,
  merge), why, and the turns each version cites.`;

export async function historyCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...commonOptions,
    user: { type: 'string' },
    tenant: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(historyUsage);
    return 0;
  }
  const id = positionals[0];
  if (id === undefined) throw new InvalidInputError(`missing <memory id>\n${historyUsage}`, 'id');
  const { config, runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const tenantId = stringOption(values, 'tenant') ?? config.defaultTenant;
    const userId = stringOption(values, 'user');
    // The operator may look a memory up without its user (the API may not).
    const history = userId === undefined ? await runtime.store.history({ tenantId }, id) : undefined;
    const view =
      userId === undefined
        ? history === undefined
          ? notFound(id)
          : historyView(id, history)
        : await memoryServiceOf(runtime, systemClock).history(operatorOf(tenantId), { userId, id });
    if (values['json'] === true) {
      console.log(JSON.stringify(view));
      return 0;
    }
    for (const version of view.versions) {
      const state = version.current
        ? 'current'
        : `closed ${version.validTo ?? ''} by ${version.closedBy ?? '?'}`;
      console.log(`${version.id}  valid from ${version.validFrom}  (${state})`);
      console.log(`    ${version.speaker}: ${version.text}`);
      console.log(
        `    sources: ${version.sourceTurnIds.join(', ')}${version.madeBy === null ? '' : `  made by ${version.madeBy}`}`,
      );
    }
    for (const decision of view.decisions) {
      console.log(
        `${decision.opId}  ${decision.op} (${decision.outcome}) by ${decision.decidedBy}: ${decision.reason}`,
      );
    }
    return 0;
  } finally {
    await runtime.close();
  }
}

function notFound(id: string): never {
  throw new LightmemError('not_found', `no memory ${id} in this scope`, { field: 'id' });
}
