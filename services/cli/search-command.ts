import { InvalidInputError } from '../core/errors.js';
import { operatorOf } from '../app/caller.js';
import { systemClock } from '../core/ports/clock.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import { commonOptions, intOption, parse, stringOption, timeOption } from './args.js';
import { openContext } from './context.js';

export const searchUsage = `lightmem search <query> --user U [--tenant T] [--limit N] [--from T] [--to T] [--as-of T] [--all] [--json]
  Ranked memories of one user: score, time, speaker, text and the source turn ids. Current versions by
  default; --as-of T: the versions valid at T; --all: superseded versions too.`;

export async function searchCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...commonOptions,
    user: { type: 'string' },
    tenant: { type: 'string' },
    limit: { type: 'string', short: 'n' },
    from: { type: 'string' },
    to: { type: 'string' },
    'as-of': { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(searchUsage);
    return 0;
  }
  const query = positionals.join(' ');
  if (query.trim() === '') throw new InvalidInputError(`missing <query>\n${searchUsage}`, 'query');
  const user = stringOption(values, 'user');
  if (user === undefined)
    throw new InvalidInputError('--user is required: memories are always searched for one user', 'user');
  const { config, runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const caller = operatorOf(stringOption(values, 'tenant') ?? config.defaultTenant);
    const results = await memoryServiceOf(runtime, systemClock).search(caller, {
      userId: user,
      query,
      limit: intOption(values, 'limit', 10),
      from: timeOption(values, 'from'),
      to: timeOption(values, 'to'),
      asOf: timeOption(values, 'as-of'),
      includeSuperseded: values['all'] === true,
    });
    if (values['json'] === true) {
      console.log(JSON.stringify(results));
      return 0;
    }
    if (results.length === 0) console.log('no memories found');
    results.forEach((r, i) => {
      console.log(
        `${String(i + 1).padStart(2)}. ${r.score.toFixed(3)}  ${r.occurredAt}  ${r.speaker}: ${r.text}`,
      );
      console.log(`    sources: ${r.sourceTurnIds.join(', ')}  (${r.id})`);
    });
    return 0;
  } finally {
    await runtime.close();
  }
}
