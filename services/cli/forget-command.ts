import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { operatorOf } from '../app/caller.js';
import { memoryServiceOf } from '../runtime/memory-service-setup.js';
import { commonOptions, parse, stringOption } from './args.js';
import { openContext } from './context.js';

export const forgetUsage = `lightmem forget --user U [--tenant T] [--json] [--data-dir D]
  Erases a user everywhere: every version of every memory, the log records of every topic, stage state,
  pending consolidation and LLM answers; leaves a tombstone so no replay brings it back; prints the receipt.`;

export async function forgetCommand(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    user: { type: 'string' },
    tenant: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(forgetUsage);
    return 0;
  }
  const userId = stringOption(values, 'user');
  if (userId === undefined) throw new InvalidInputError(`forget needs --user\n${forgetUsage}`, 'user');
  const { config, runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const service = memoryServiceOf(runtime, systemClock);
    const receipt = await service.eraseUser(
      operatorOf(stringOption(values, 'tenant') ?? config.defaultTenant),
      {
        userId,
      },
    );
    if (values['json'] === true) {
      console.log(JSON.stringify(receipt));
      return 0;
    }
    console.log(`erased user ${receipt.userId} of tenant ${receipt.tenantId} at ${receipt.erasedAt}`);
    for (const removed of receipt.removed) console.log(`  ${removed.where}: ${removed.count}`);
    return 0;
  } finally {
    await runtime.close();
  }
}
