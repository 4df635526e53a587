import { Agent as HttpsAgent } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import type { SASLOptions } from 'kafkajs';
import type { ClientConfig } from '@confluentinc/schemaregistry/dist/rest-service.js';
import type { KafkaSasl, KafkaSsl, LightmemConfig, TlsSettings } from '../../core/config.js';
import { LightmemError, errorMessage } from '../../core/errors.js';
import { readPemFile } from '../pem-file.js';

/** TLS and SASL of the Kafka clients (`kafka.ssl`, `kafka.sasl`). */
export interface KafkaSecurity {
  readonly ssl?: KafkaSsl | undefined;
  readonly sasl?: KafkaSasl | undefined;
  /** Wraps the per-user keys in the keyring topic (base64 of 32 bytes). */
  readonly keyEncryptionKey?: string | undefined;
}

/** HTTP basic authentication and TLS of the schema registry client (`registry.*`). */
export interface RegistrySecurity {
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly tls?: Pick<TlsSettings, 'ca' | 'rejectUnauthorized'> | undefined;
}

/** The security settings of the `kafka` config section. */
export function kafkaSecurityOf(settings: LightmemConfig['kafka']): KafkaSecurity {
  return { ssl: settings.ssl, sasl: settings.sasl, keyEncryptionKey: settings.keyEncryptionKey };
}

/** The security settings of the `registry` config section. */
export function registrySecurityOf(settings: LightmemConfig['registry']): RegistrySecurity {
  return { username: settings.username, password: settings.password, tls: settings.tls };
}

/** Node TLS options from TLS settings; `field` prefixes the setting names in errors (e.g. `kafka.ssl`). */
export function tlsConnectionOptions(settings: TlsSettings, field: string): ConnectionOptions {
  const options: ConnectionOptions = {};
  if (settings.ca !== undefined) options.ca = [readPemFile(settings.ca, `${field}.ca`)];
  if (settings.cert !== undefined) options.cert = readPemFile(settings.cert, `${field}.cert`);
  if (settings.key !== undefined) options.key = readPemFile(settings.key, `${field}.key`);
  if (settings.rejectUnauthorized !== undefined) options.rejectUnauthorized = settings.rejectUnauthorized;
  return options;
}

/** kafkajs's `ssl`: undefined (plaintext), true (the system's CAs), or TLS options with the files read. */
export function kafkaSslOption(ssl: KafkaSsl | undefined): boolean | ConnectionOptions | undefined {
  if (ssl === undefined || ssl === false) return undefined;
  if (ssl === true) return true;
  const options = tlsConnectionOptions(ssl, 'kafka.ssl');
  return Object.keys(options).length === 0 ? true : options;
}

/** kafkajs's `sasl`. */
export function kafkaSaslOption(sasl: KafkaSasl | undefined): SASLOptions | undefined {
  if (sasl === undefined) return undefined;
  const { username, password } = sasl;
  switch (sasl.mechanism) {
    case 'plain':
      return { mechanism: 'plain', username, password };
    case 'scram-sha-256':
      return { mechanism: 'scram-sha-256', username, password };
    case 'scram-sha-512':
      return { mechanism: 'scram-sha-512', username, password };
  }
}

/** True when a kafkajs failure (or one of its causes) is the broker refusing our SASL credentials. */
export function isKafkaAuthFailure(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const name = 'name' in current ? String(current.name) : '';
    const type = 'type' in current ? String(current.type) : '';
    if (
      name === 'KafkaJSSASLAuthenticationError' ||
      type === 'SASL_AUTHENTICATION_FAILED' ||
      type === 'ILLEGAL_SASL_STATE' ||
      type === 'UNSUPPORTED_SASL_MECHANISM'
    )
      return true;
    current =
      'originalError' in current && current.originalError !== undefined
        ? current.originalError
        : 'cause' in current
          ? current.cause
          : undefined;
  }
  return false;
}

/** The broker refused our credentials: a configuration error, not retried (retrying cannot help). */
export function kafkaAuthError(brokers: readonly string[], error: unknown): LightmemError {
  return new LightmemError(
    'config_invalid',
    `kafka: ${brokers.join(',')} refused the SASL credentials (kafka.sasl: mechanism, username, password): ${errorMessage(error)}`,
    { field: 'kafka.sasl', cause: error, retryable: false },
  );
}

/** The `Authorization` header of the registry's basic authentication (none without credentials). */
export function registryAuthHeaders(security: RegistrySecurity | undefined): Record<string, string> {
  if (security?.username === undefined || security.password === undefined) return {};
  const token = Buffer.from(`${security.username}:${security.password}`, 'utf8').toString('base64');
  return { Authorization: `Basic ${token}` };
}

/** The schema registry client's configuration: basic auth and, for https with a private CA, an agent. */
export function registryClientConfig(url: string, security: RegistrySecurity | undefined): ClientConfig {
  const config: ClientConfig = {
    baseURLs: [url],
    maxRetries: 3,
    retriesWaitMs: 200,
    retriesMaxWaitMs: 2_000,
  };
  if (security?.username !== undefined && security.password !== undefined) {
    config.basicAuthCredentials = {
      credentialsSource: 'USER_INFO',
      userInfo: `${security.username}:${security.password}`,
    };
  }
  if (security?.tls !== undefined) {
    const tls = tlsConnectionOptions(security.tls, 'registry.tls');
    config.createAxiosDefaults = { httpsAgent: new HttpsAgent(tls) };
  }
  return config;
}
