import { LightmemError, errorMessage } from '../core/errors.js';
import { ingestCommand, ingestUsage } from './ingest-command.js';
import { searchCommand, searchUsage } from './search-command.js';
import { statsCommand, statsUsage } from './stats-command.js';
import { serveCommand, serveUsage } from './serve-command.js';
import { benchCommand, benchUsage } from './bench-command.js';
import { modelsCommand, modelsUsage } from './models-command.js';
import { serviceCommand, serviceUsage } from './service-command.js';
import { adminCommand, adminUsage } from './admin-command.js';
import { consolidateCommand, consolidateUsage } from './consolidate-command.js';
import { historyCommand, historyUsage } from './history-command.js';
import { forgetCommand, forgetUsage } from './forget-command.js';
import { replayCommand, replayUsage } from './replay-command.js';
import { keyCommand, keyUsage, tenantCommand, tenantUsage } from './tenant-command.js';

const usage = `lightmem — long-term memory for LLM agents

${ingestUsage}

${searchUsage}

${historyUsage}

${consolidateUsage}

${forgetUsage}
${replayUsage}

${statsUsage}

${serveUsage}

${tenantUsage}

${keyUsage}

${benchUsage}

${modelsUsage}

${serviceUsage}

${adminUsage}

Common options: --data-dir D (default ./.lightmem or LIGHTMEM_DATA_DIR), --config FILE (or LIGHTMEM_CONFIG),
--log-level debug|info|warn|error|silent, --mode embedded|distributed (or LIGHTMEM_MODE).`;

const commands: Record<string, (argv: readonly string[]) => Promise<number>> = {
  ingest: ingestCommand,
  search: searchCommand,
  history: historyCommand,
  consolidate: consolidateCommand,
  forget: forgetCommand,
  replay: replayCommand,
  stats: statsCommand,
  serve: serveCommand,
  tenant: tenantCommand,
  key: keyCommand,
  bench: benchCommand,
  models: modelsCommand,
  service: serviceCommand,
  admin: adminCommand,
};

/** Runs one CLI command; returns the exit code. Errors are printed as one line naming the field. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    console.log(usage);
    return name === undefined ? 1 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    console.error(`unknown command ${name}\n\n${usage}`);
    return 1;
  }
  try {
    return await command(rest);
  } catch (error) {
    if (error instanceof LightmemError) {
      console.error(`error: ${error.field === undefined ? '' : `${error.field}: `}${error.message}`);
      return error.code === 'invalid_input' || error.code === 'config_invalid' ? 2 : 1;
    }
    console.error(`error: ${errorMessage(error)}`);
    return 1;
  }
}
