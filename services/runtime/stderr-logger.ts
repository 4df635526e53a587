import type { LogFields, Logger } from '../core/ports/logger.js';
import { withoutUrlCredentials } from '../core/config.js';

const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof levels;

/** Field names whose values are secrets (or may hold them): API keys, passwords, SASL and auth settings. */
const secretKey = /key|secret|token|passw|pwd|authorization|credential|cookie|sasl|^auth$|userinfo/i;
/** An HTTP credential inside a text (an error message quoting a header). */
const authScheme = /\b(Basic|Bearer|ApiKey)\s+[A-Za-z0-9+/=._~-]{8,}/g;

/** A text as it may be logged: no `user:password@` in URLs, no `Basic …` / `Bearer …` / `ApiKey …` values. */
export function redactText(text: string): string {
  return withoutUrlCredentials(text).replace(authScheme, '$1 [redacted]');
}

/** Fields as they may be logged: secret-looking names redacted, credentials stripped from the other texts. */
export function redactFields(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (secretKey.test(key)) out[key] = '[redacted]';
    else out[key] = typeof value === 'string' ? redactText(value) : value;
  }
  return out;
}

/** One JSON line per event on stderr (stdout stays for command output). Secret-looking fields are redacted. */
export function stderrLogger(level: LogLevel, base: LogFields = {}): Logger {
  const threshold = levels[level];
  const write = (name: Exclude<LogLevel, 'silent'>, message: string, fields: LogFields = {}): void => {
    if (levels[name] < threshold) return;
    const merged = redactFields({ ...base, ...fields });
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: name, message: redactText(message), ...merged })}\n`,
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
