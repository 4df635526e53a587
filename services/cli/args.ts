import { Instant } from '../app/api-schemas.js';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidInputError } from '../core/errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(
  argv: readonly string[],
  options: Options,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (error) {
    throw new InvalidInputError(error instanceof Error ? error.message : String(error), 'argv');
  }
}

export function stringOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function intOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
  fallback: number,
): number {
  const value = stringOption(values, name);
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed))
    throw new InvalidInputError(`--${name} must be an integer (got ${value})`, name);
  return parsed;
}

export function timeOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
): number | undefined {
  const value = stringOption(values, name);
  if (value === undefined) return undefined;
  // The API's own strict reading: a real calendar date (no 2024-02-30), no zone means UTC.
  const parsed = Instant.safeParse(value);
  if (!parsed.success)
    throw new InvalidInputError(`--${name} must be an ISO-8601 time or epoch ms (got ${value})`, name);
  return parsed.data;
}

/** Options every command takes. */
export const commonOptions: Options = {
  'data-dir': { type: 'string' },
  config: { type: 'string' },
  'log-level': { type: 'string' },
  /** embedded (default) or distributed (Kafka + schema registry + Elasticsearch); also LIGHTMEM_MODE. */
  mode: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};
