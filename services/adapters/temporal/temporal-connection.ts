import { readPemFile } from '../pem-file.js';
import type { TemporalEndpoint } from './consolidation-entity.js';

/** TLS of a Temporal connection (the client's and the worker's connections take the same shape). */
export interface TemporalTlsOptions {
  serverNameOverride?: string;
  serverRootCACertificate?: Buffer;
  clientCertPair?: { crt: Buffer; key: Buffer };
}

/**
 * The address, TLS and API key of a connection to the Temporal frontend, for `Connection` (client) and
 * `NativeConnection` (worker) alike. PEM files are read here: an unreadable one fails at start-up with a
 * config error naming its setting. An API key implies TLS (Temporal Cloud refuses it in the clear).
 */
export function temporalConnectionOptions(endpoint: Pick<TemporalEndpoint, 'address' | 'security'>): {
  address: string;
  tls?: TemporalTlsOptions | true;
  apiKey?: string;
} {
  const security = endpoint.security;
  const settings = security?.tls;
  const tls: TemporalTlsOptions = {};
  if (settings?.serverName !== undefined) tls.serverNameOverride = settings.serverName;
  if (settings?.ca !== undefined) tls.serverRootCACertificate = readPemFile(settings.ca, 'temporal.tls.ca');
  if (settings?.cert !== undefined && settings.key !== undefined) {
    tls.clientCertPair = {
      crt: readPemFile(settings.cert, 'temporal.tls.cert'),
      key: readPemFile(settings.key, 'temporal.tls.key'),
    };
  }
  const tlsOn = settings !== undefined || security?.apiKey !== undefined;
  return {
    address: endpoint.address,
    ...(tlsOn ? { tls: Object.keys(tls).length > 0 ? tls : true } : {}),
    ...(security?.apiKey === undefined ? {} : { apiKey: security.apiKey }),
  };
}
