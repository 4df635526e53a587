import type { LogFields, Logger } from '../core/ports/logger.js';

const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof levels;

const secretKey = /key|secret|token|password|authorization/i;

/** One JSON line per event on stderr (stdout stays for command output). Secret-looking fields are redacted. */
export function stderrLogger(level: LogLevel, base: LogFields = {}): Logger {
  const threshold = levels[level];
  const write = (name: Exclude<LogLevel, 'silent'>, message: string, fields: LogFields = {}): void => {
    if (levels[name] < threshold) return;
    const merged: LogFields = { ...base, ...fields };
    for (const key of Object.keys(merged)) if (secretKey.test(key)) merged[key] = '[redacted]';
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: name, message, ...merged })}\n`,
    );
  };
  return {
    debug: (message, fields) => write('debug', message, fields),
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
    child: (fields) => stderrLogger(level, { ...base, ...fields }),
  };
}
