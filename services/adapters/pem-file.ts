import { readFileSync } from 'node:fs';
import { LightmemError, errorMessage } from '../core/errors.js';

/**
 * The contents of a PEM file a setting names, read when a client is built. A file that cannot be read, or
 * holds no PEM block, fails at start-up with a config error naming the setting (never at the first request).
 */
export function readPemFile(path: string, field: string): Buffer {
  let contents: Buffer;
  try {
    contents = readFileSync(path);
  } catch (error) {
    throw new LightmemError('config_invalid', `cannot read ${field} (${path}): ${errorMessage(error)}`, {
      field,
      cause: error,
    });
  }
  if (!contents.includes('-----BEGIN ')) {
    throw new LightmemError(
      'config_invalid',
      `${field} (${path}) is not a PEM file (no "-----BEGIN" line; convert DER with openssl)`,
      { field },
    );
  }
  return contents;
}
