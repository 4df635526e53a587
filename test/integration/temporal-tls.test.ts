import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { temporalConnectionOptions } from '../../services/adapters/temporal/temporal-connection.js';
import type { TemporalSecurity } from '../../services/adapters/temporal/consolidation-entity.js';
import { servers } from './support/servers.js';
import { testCa } from '../support/test-certificates.js';
import type { ProbeActivities, consolidationProbe } from './support/temporal-workflow.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-temporal-tls-'));

/**
 * Temporal over TLS with mutual authentication, the way Temporal Cloud (mTLS namespaces) or a self-hosted
 * frontend with TLS is reached: the real dev server behind a TLS terminator of ours (a private CA, a
 * server certificate for `temporal.test`, client certificates required). The client connection (grpc-js)
 * and the worker's (Rust core) both use `temporalConnectionOptions`, built from the config settings.
 */
describe('Temporal over TLS with client certificates (real dev server behind a TLS terminator)', () => {
  let proxy: Server;
  let address = '';
  let security: TemporalSecurity;

  before(async () => {
    const ca = testCa(dir);
    const server = ca.issue('server', 'temporal.test', 'serverAuth');
    const client = ca.issue('client', 'lightmem-worker', 'clientAuth');
    const [host, port] = servers.temporalAddress.split(':');
    proxy = createServer(
      {
        key: readFileSync(server.key),
        cert: readFileSync(server.cert),
        ca: readFileSync(ca.ca),
        requestCert: true,
        rejectUnauthorized: true,
        ALPNProtocols: ['h2'],
      },
      (socket) => {
        const upstream = connect(Number(port), host ?? '127.0.0.1');
        socket.pipe(upstream).pipe(socket);
        const close = () => {
          socket.destroy();
          upstream.destroy();
        };
        socket.on('error', close);
        upstream.on('error', close);
      },
    );
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    address = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    security = {
      tls: { ca: ca.ca, cert: client.cert, key: client.key, serverName: 'temporal.test' },
    };
  });

  after(async () => {
    await new Promise((resolve) => proxy.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a worker and a client with the configured CA and client certificate run a workflow', async () => {
    const options = temporalConnectionOptions({ address, security });
    const workerConnection = await NativeConnection.connect(options);
    const clientConnection = await Connection.connect(options);
    const taskQueue = `lightmem-tls-${randomUUID()}`;
    const activities: ProbeActivities = { countMemories: async () => 7 };
    try {
      const worker = await Worker.create({
        connection: workerConnection,
        taskQueue,
        workflowsPath: new URL('./support/temporal-workflow.ts', import.meta.url).pathname,
        activities,
      });
      const result: unknown = await worker.runUntil(
        new Client({ connection: clientConnection }).workflow.execute<typeof consolidationProbe>(
          'consolidationProbe',
          { taskQueue, workflowId: `tls-probe-${randomUUID()}`, args: ['tenant-a'] },
        ),
      );
      assert.deepEqual(result, { before: 7, after: 7 });
    } finally {
      await clientConnection.close();
      await workerConnection.close();
    }
  });

  it('without the client certificate, or without the CA, the connection is refused', async () => {
    const noClientCert = temporalConnectionOptions({
      address,
      security: { tls: { ca: security.tls?.ca, serverName: 'temporal.test' } },
    });
    const noCa = temporalConnectionOptions({
      address,
      security: { tls: { cert: security.tls?.cert, key: security.tls?.key, serverName: 'temporal.test' } },
    });
    for (const options of [noClientCert, noCa]) {
      await assert.rejects(async () => {
        const connection = await Connection.connect({ ...options, connectTimeout: 3_000 });
        try {
          await connection.workflowService.getSystemInfo({});
        } finally {
          await connection.close();
        }
      });
    }
  });
});
