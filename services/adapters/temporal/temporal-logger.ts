import { Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';
import type { LogFields, Logger } from '../../core/ports/logger.js';

function fieldsOf(meta: LogMetadata | undefined): LogFields {
  const fields: LogFields = {};
  for (const [key, value] of Object.entries(meta ?? {})) {
    if (value === null || value === undefined) continue;
    fields[key] =
      typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
        ? value
        : value instanceof Error
          ? value.message
          : JSON.stringify(value);
  }
  return fields;
}

let installed = false;

/**
 * Installs the Temporal runtime (a process-wide singleton) with its logs (the worker's, and the workflows'
 * `log`) sent to our logger, and without its own signal handlers: the process's entry point decides when
 * to stop, through the worker's abort signal. The first call installs it; later calls, or a runtime
 * already installed by someone else, keep it as it is.
 */
export function installTemporalLogger(logger: Logger): void {
  if (installed) return;
  installed = true;
  const log = logger.child({ component: 'temporal' });
  const write = (level: LogLevel, message: string, meta?: LogMetadata): void => {
    const fields = fieldsOf(meta);
    if (level === 'ERROR') log.error(message, fields);
    else if (level === 'WARN') log.warn(message, fields);
    else if (level === 'INFO') log.info(message, fields);
    else log.debug(message, fields);
  };
  try {
    Runtime.install({
      shutdownSignals: [],
      logger: {
        log: write,
        trace: (message, meta) => write('TRACE', message, meta),
        debug: (message, meta) => write('DEBUG', message, meta),
        info: (message, meta) => write('INFO', message, meta),
        warn: (message, meta) => write('WARN', message, meta),
        error: (message, meta) => write('ERROR', message, meta),
      },
    });
  } catch {
    // Installed already (by an earlier worker or connection of this process): keep that one.
  }
}
