import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { adminInit } from '../runtime/distributed-runtime.js';
import { commonOptions, parse } from './args.js';
import { commandConfig, commandLogger } from './context.js';

export const adminUsage = `lightmem admin init [--config F] [--json]
  Prepares the servers of distributed mode (idempotent): creates the Kafka topics (data topics and each
  stage's state changelog), registers the Avro schemas in the registry with BACKWARD_TRANSITIVE
  compatibility (producers never register), and creates the Elasticsearch index template, index and alias.`;

export async function adminCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...commonOptions, json: { type: 'boolean' } });
  if (values['help'] === true) {
    console.log(adminUsage);
    return 0;
  }
  if (positionals[0] !== 'init')
    throw new InvalidInputError(`unknown admin command\n${adminUsage}`, 'command');
  const config = commandConfig(values, { mode: 'distributed' });
  const logger = commandLogger(values, config, { logLevel: 'warn' });
  const result = await adminInit(config, { logger, clock: systemClock });
  if (values['json'] === true) {
    console.log(JSON.stringify(result));
    return 0;
  }
  console.log(
    `topics: ${result.createdTopics.length === 0 ? 'all present' : `created ${result.createdTopics.join(', ')}`}`,
  );
  for (const schema of result.schemas)
    console.log(`schema: ${schema.subject} version ${schema.version} (id ${schema.id})`);
  console.log(`elasticsearch: alias ${result.index} ready`);
  return 0;
}
