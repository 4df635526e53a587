import { LightmemError, errorMessage } from '../core/errors.js';

interface Command {
  readonly run: (argv: readonly string[]) => Promise<number>;
  readonly usage: string;
}

/**
 * Each command's module, imported when that command runs: a command loads only what it uses (`search`
 * does not load the HTTP server, the benchmarks or the distributed-mode clients), which is most of a
 * cold start. In the order of the usage text.
 */
const commands: Record<string, () => Promise<Command>> = {
  ingest: async () => {
    const m = await import('./ingest-command.js');
    return { run: m.ingestCommand, usage: m.ingestUsage };
  },
  search: async () => {
    const m = await import('./search-command.js');
    return { run: m.searchCommand, usage: m.searchUsage };
  },
  history: async () => {
    const m = await import('./history-command.js');
    return { run: m.historyCommand, usage: m.historyUsage };
  },
  consolidate: async () => {
    const m = await import('./consolidate-command.js');
    return { run: m.consolidateCommand, usage: m.consolidateUsage };
  },
  forget: async () => {
    const m = await import('./forget-command.js');
    return { run: m.forgetCommand, usage: m.forgetUsage };
  },
  replay: async () => {
    const m = await import('./replay-command.js');
    return { run: m.replayCommand, usage: m.replayUsage };
  },
  stats: async () => {
    const m = await import('./stats-command.js');
    return { run: m.statsCommand, usage: m.statsUsage };
  },
  serve: async () => {
    const m = await import('./serve-command.js');
    return { run: m.serveCommand, usage: m.serveUsage };
  },
  tenant: async () => {
    const m = await import('./tenant-command.js');
    return { run: m.tenantCommand, usage: m.tenantUsage };
  },
  key: async () => {
    const m = await import('./tenant-command.js');
    return { run: m.keyCommand, usage: m.keyUsage };
  },
  bench: async () => {
    const m = await import('./bench-command.js');
    return { run: m.benchCommand, usage: m.benchUsage };
  },
  models: async () => {
    const m = await import('./models-command.js');
    return { run: m.modelsCommand, usage: m.modelsUsage };
  },
  mcp: async () => {
    const m = await import('./mcp-command.js');
    return { run: m.mcpCommand, usage: m.mcpUsage };
  },
  service: async () => {
    const m = await import('./service-command.js');
    return { run: m.serviceCommand, usage: m.serviceUsage };
  },
  admin: async () => {
    const m = await import('./admin-command.js');
    return { run: m.adminCommand, usage: m.adminUsage };
  },
};

/** The usage of every command (imports them all: only for help and an unknown command). */
async function usageText(): Promise<string> {
  const usages = await Promise.all(Object.values(commands).map(async (load) => (await load()).usage));
  // forget and replay are printed together, as one group.
  const [ingest, search, history, consolidate, forget, replay, ...rest] = usages;
  const sections = [ingest, search, history, consolidate, `${forget}\n${replay}`, ...rest];
  return `lightmem — long-term memory for LLM agents

${sections.join('\n\n')}

Common options: --data-dir D (default ./.lightmem or LIGHTMEM_DATA_DIR), --config FILE (or LIGHTMEM_CONFIG),
--log-level debug|info|warn|error|silent, --mode embedded|distributed (or LIGHTMEM_MODE).`;
}

/** Runs one CLI command; returns the exit code. Errors are printed as one line naming the field. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    console.log(await usageText());
    return name === undefined ? 1 : 0;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (load === undefined) {
    console.error(`unknown command ${name}\n\n${await usageText()}`);
    return 1;
  }
  try {
    return await (await load()).run(rest);
  } catch (error) {
    if (error instanceof LightmemError) {
      console.error(`error: ${error.field === undefined ? '' : `${error.field}: `}${error.message}`);
      return error.code === 'invalid_input' || error.code === 'config_invalid' ? 2 : 1;
    }
    console.error(`error: ${errorMessage(error)}`);
    return 1;
  }
}
