import { Client, type ClientOptions } from '@elastic/elasticsearch';
import { readPemFile } from '../pem-file.js';
import { withoutUrlCredentials, type LightmemConfig } from '../../core/config.js';
import { LightmemError } from '../../core/errors.js';
import type { Clock } from '../../core/ports/clock.js';

/** Credentials and TLS of the Elasticsearch client (`elasticsearch.apiKey` | `username` + `password`, `tls`). */
export interface ElasticsearchSecurity {
  readonly apiKey?: string | undefined;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly tls?:
    { readonly ca?: string | undefined; readonly rejectUnauthorized?: boolean | undefined } | undefined;
}

/** The security settings of the `elasticsearch` config section. */
export function elasticsearchSecurityOf(settings: LightmemConfig['elasticsearch']): ElasticsearchSecurity {
  return {
    apiKey: settings.apiKey,
    username: settings.username,
    password: settings.password,
    tls: settings.tls,
  };
}

/**
 * Where a small registry kept in Elasticsearch lives (the tenant directory, the pipeline versions), and how
 * it is reached. Every API replica and stage service reads the same one.
 */
export interface ElasticsearchRegistryOptions {
  /** e.g. http://127.0.0.1:19200 */
  readonly node: string;
  /** Credentials and TLS (`elasticsearch.apiKey` | `username` + `password`, `elasticsearch.tls`). */
  readonly security?: ElasticsearchSecurity | undefined;
  /** The deployment's index prefix (`elasticsearch.indexPrefix`). */
  readonly indexPrefix: string;
  /** Creation times (default: the system clock). */
  readonly clock?: Clock | undefined;
  readonly requestTimeoutMs?: number | undefined;
}

export interface ElasticsearchConnection {
  readonly node: string;
  readonly security?: ElasticsearchSecurity | undefined;
  /** Per request (default 30 s). */
  readonly requestTimeoutMs?: number | undefined;
}

/**
 * The client's options: one retry of a failed connection inside the client (longer outages are the
 * caller's to retry), an API key or basic credentials, and the CA of an https node.
 */
export function elasticsearchClientOptions(connection: ElasticsearchConnection): ClientOptions {
  const { security } = connection;
  const options: ClientOptions = {
    node: connection.node,
    requestTimeout: connection.requestTimeoutMs ?? 30_000,
    maxRetries: 1,
  };
  if (security?.apiKey !== undefined) options.auth = { apiKey: security.apiKey };
  else if (security?.username !== undefined && security.password !== undefined)
    options.auth = { username: security.username, password: security.password };
  if (security?.tls !== undefined) {
    const tls: NonNullable<ClientOptions['tls']> = {};
    if (security.tls.ca !== undefined) tls.ca = readPemFile(security.tls.ca, 'elasticsearch.tls.ca');
    if (security.tls.rejectUnauthorized !== undefined)
      tls.rejectUnauthorized = security.tls.rejectUnauthorized;
    options.tls = tls;
  }
  return options;
}

/** An Elasticsearch client; a node that is not a URL is a config error (without any credentials in it). */
export function elasticsearchClient(connection: ElasticsearchConnection): Client {
  const options = elasticsearchClientOptions(connection);
  try {
    return new Client(options);
  } catch (error) {
    throw new LightmemError(
      'config_invalid',
      `invalid Elasticsearch node ${withoutUrlCredentials(connection.node)}`,
      { field: 'node', cause: error },
    );
  }
}
