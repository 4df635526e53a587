import type { LightmemConfig, LightmemConfigInput } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { systemClock } from '../core/ports/clock.js';
import { loadConfig } from '../runtime/load-config.js';
import { stderrLogger, type LogLevel } from '../runtime/stderr-logger.js';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import { stringOption } from './args.js';
import { ProgressBar } from './progress.js';

export interface CommandContext {
  readonly config: LightmemConfig;
  readonly logger: Logger;
  readonly runtime: EmbeddedRuntime;
}

/** Only the CLI entry point reads process.env; everything below gets a parsed config. */
export async function openContext(
  values: Record<string, string | boolean | undefined>,
  defaults: { logLevel: LogLevel },
  overrides: LightmemConfigInput = {},
): Promise<CommandContext> {
  const dataDir = stringOption(values, 'data-dir');
  const logLevel = stringOption(values, 'log-level');
  const config = loadConfig({
    env: process.env,
    file: stringOption(values, 'config'),
    overrides: {
      ...overrides,
      ...(dataDir === undefined ? {} : { dataDir }),
      ...(logLevel === undefined ? {} : { logLevel: logLevel as LogLevel }),
    },
  });
  const level =
    logLevel !== undefined || process.env['LIGHTMEM_LOG_LEVEL'] !== undefined
      ? config.logLevel
      : defaults.logLevel;
  const logger = stderrLogger(level);
  const download = new ProgressBar('fetching model', process.stderr, level === 'silent');
  const runtime = await EmbeddedRuntime.open(config, {
    logger,
    clock: systemClock,
    onFetchProgress: (p) => download.update(p.done, p.total === 0 ? p.done : p.total, `${p.phase} bytes`),
  });
  download.finish();
  return { config, logger, runtime };
}
