import type { LightmemConfig, LightmemConfigInput } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { systemClock } from '../core/ports/clock.js';
import { loadConfig } from '../runtime/load-config.js';
import { stderrLogger, type LogLevel } from '../runtime/stderr-logger.js';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import type { Runtime, RuntimeOptions } from '../runtime/runtime.js';
import { InvalidInputError } from '../core/errors.js';
import { stringOption } from './args.js';
import { ProgressBar } from './progress.js';

export type CommandContext = ContextOf<Runtime>;

/** The configuration of a command: defaults < file < environment < flags (--data-dir, --log-level, --mode). */
export function commandConfig(
  values: Record<string, string | boolean | undefined>,
  overrides: LightmemConfigInput = {},
): LightmemConfig {
  const dataDir = stringOption(values, 'data-dir');
  const logLevel = stringOption(values, 'log-level');
  const mode = stringOption(values, 'mode');
  if (mode !== undefined && mode !== 'embedded' && mode !== 'distributed') {
    throw new InvalidInputError(`--mode must be embedded or distributed (got ${mode})`, 'mode');
  }
  return loadConfig({
    env: process.env,
    file: stringOption(values, 'config'),
    overrides: {
      ...overrides,
      ...(dataDir === undefined ? {} : { dataDir }),
      ...(logLevel === undefined ? {} : { logLevel: logLevel as LogLevel }),
      ...(mode === undefined ? {} : { mode }),
    },
  });
}

/** The log level of a command: its quiet default unless the user asked for one. */
export function commandLogger(
  values: Record<string, string | boolean | undefined>,
  config: LightmemConfig,
  defaults: { logLevel: LogLevel },
): Logger {
  const level =
    stringOption(values, 'log-level') !== undefined || process.env['LIGHTMEM_LOG_LEVEL'] !== undefined
      ? config.logLevel
      : defaults.logLevel;
  return stderrLogger(level);
}

interface ContextOf<R> {
  readonly config: LightmemConfig;
  readonly logger: Logger;
  readonly runtime: R;
}

async function openWith<R>(
  values: Record<string, string | boolean | undefined>,
  defaults: { logLevel: LogLevel },
  overrides: LightmemConfigInput,
  open: (config: LightmemConfig, options: RuntimeOptions) => Promise<R>,
  extra: Pick<RuntimeOptions, 'serving' | 'wrapExtractor'> = {},
): Promise<ContextOf<R>> {
  const config = commandConfig(values, overrides);
  const logger = commandLogger(values, config, defaults);
  const download = new ProgressBar('fetching model', process.stderr, config.logLevel === 'silent');
  const runtime = await open(config, {
    ...extra,
    env: process.env,
    logger,
    clock: systemClock,
    onFetchProgress: (p) => download.update(p.done, p.total === 0 ? p.done : p.total, `${p.phase} bytes`),
  });
  download.finish();
  return { config, logger, runtime };
}

/** Only the CLI entry point reads process.env; everything below gets a parsed config. Opens the configured mode. */
export async function openContext(
  values: Record<string, string | boolean | undefined>,
  defaults: { logLevel: LogLevel },
  overrides: LightmemConfigInput = {},
  extra: Pick<RuntimeOptions, 'serving'> = {},
): Promise<CommandContext> {
  return openWith<Runtime>(
    values,
    defaults,
    overrides,
    // The distributed runtime (Kafka, Elasticsearch, Temporal clients) is imported only in that mode.
    async (config, options) =>
      config.mode === 'distributed'
        ? (await import('../runtime/distributed-runtime.js')).DistributedRuntime.open(config, options)
        : EmbeddedRuntime.open(config, options),
    extra,
  );
}

/** The embedded runtime whatever the mode (benchmarks drive its pipeline directly). */
export async function openEmbeddedContext(
  values: Record<string, string | boolean | undefined>,
  defaults: { logLevel: LogLevel },
  overrides: LightmemConfigInput = {},
  extra: Pick<RuntimeOptions, 'wrapExtractor'> = {},
): Promise<ContextOf<EmbeddedRuntime>> {
  return openWith(
    values,
    defaults,
    // Benchmarks read the intermediate topics back from the start when a run ends (the compressor's kept
    // tokens of every turn): nothing is pruned under them.
    { ...overrides, sqlite: { ...overrides.sqlite, pruneConsumedMs: 0 } },
    (config, options) => EmbeddedRuntime.open(config, options),
    extra,
  );
}
