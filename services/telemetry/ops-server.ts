import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../core/ports/logger.js';
import { errorFields, errorMessage } from '../core/errors.js';
import { metricsContentType, metricsText, type MetricsSources } from './metrics.js';

export interface OpsServerOptions extends MetricsSources {
  readonly host: string;
  readonly port: number;
  /** Whether the service does its work now (Kubernetes readiness); reasons when not. */
  readonly readiness: () => Promise<{ ready: boolean; reasons: readonly string[] }>;
  readonly logger: Logger;
}

export interface OpsServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The operations endpoints of a `lightmem service` process (which has no API): `GET /metrics` (Prometheus
 * text), `GET /livez` (the process answers: 200) and `GET /readyz` (200 while the service works, 503 with
 * the reasons otherwise), for Prometheus and the Kubernetes probes. Plain node:http, no key: nothing here
 * is tenant text or a secret.
 */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      response.end(JSON.stringify(body));
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('allow', 'GET, HEAD');
      json(405, {
        error: { code: 'method_not_allowed', message: 'GET only', field: null, retryable: false },
      });
      return;
    }
    const answer = async (): Promise<void> => {
      switch (path) {
        case '/metrics': {
          const text = await metricsText(options);
          response.writeHead(200, { 'content-type': metricsContentType });
          response.end(text);
          return;
        }
        case '/livez':
          json(200, { status: 'ok' });
          return;
        case '/readyz': {
          const { ready, reasons } = await options.readiness();
          json(ready ? 200 : 503, { status: ready ? 'ok' : 'unavailable', ready, reasons });
          return;
        }
        default:
          json(404, {
            error: { code: 'not_found', message: `no route ${path}`, field: null, retryable: false },
          });
      }
    };
    answer().catch((error: unknown) => {
      options.logger.warn('ops endpoint failed', { path, ...errorFields(error) });
      if (!response.headersSent) {
        json(503, { status: 'unavailable', ready: false, reasons: [errorMessage(error)] });
      } else response.destroy();
    });
  });
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  options.logger.info('ops endpoints listening', { url, paths: '/metrics /livez /readyz' });
  return {
    url,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
