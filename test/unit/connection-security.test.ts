import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { errors } from '@elastic/elasticsearch';
import { LightmemConfig, withoutUrlCredentials } from '../../services/core/config.js';
import { LightmemError } from '../../services/core/errors.js';
import { Topics } from '../../services/core/model/topics.js';
import { loadConfig } from '../../services/runtime/load-config.js';
import { redactText, stderrLogger } from '../../services/runtime/stderr-logger.js';
import { securitySummary } from '../../services/runtime/distributed-runtime.js';
import { kafkaClient, kafkaClientOptions } from '../../services/adapters/kafka/kafka-event-log.js';
import {
  isKafkaAuthFailure,
  kafkaSecurityOf,
  registryAuthHeaders,
  registryClientConfig,
  registrySecurityOf,
} from '../../services/adapters/kafka/kafka-security.js';
import { RegistryAvroCodec, registryClient } from '../../services/adapters/kafka/registry-codec.js';
import {
  elasticsearchClient,
  elasticsearchClientOptions,
  elasticsearchSecurityOf,
} from '../../services/adapters/elasticsearch/es-client.js';
import { ElasticsearchTenantDirectory } from '../../services/adapters/elasticsearch/es-tenant-directory.js';
import { esFailure } from '../../services/adapters/elasticsearch/es-errors.js';
import { temporalConnectionOptions } from '../../services/adapters/temporal/temporal-connection.js';
import { temporalEndpoint } from '../../services/adapters/temporal/consolidation-entity.js';
import { silentLogger } from '../support/memory-logger.js';
import { haveOpenssl, selfSigned } from '../support/test-certificates.js';
import { capturingStderr } from '../support/capture-stderr.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-security-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function pemFile(name: string, label = 'CERTIFICATE'): string {
  const path = join(dir, name);
  writeFileSync(path, `-----BEGIN ${label}-----\nMIIB${name}\n-----END ${label}-----\n`);
  return path;
}

/** A data dir without a config.json (loadConfig would read one there). */
const dataDir = join(dir, 'data');

describe('connection security: configuration', () => {
  it('reads every TLS, SASL and credential setting from the environment', () => {
    const ca = pemFile('kafka-ca.pem');
    const config = loadConfig({
      env: {
        LIGHTMEM_KAFKA_SSL_CA: ca,
        LIGHTMEM_KAFKA_SSL_CERT: '/etc/tls/client.pem',
        LIGHTMEM_KAFKA_SSL_KEY: '/etc/tls/client.key',
        LIGHTMEM_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
        LIGHTMEM_KAFKA_SASL_USERNAME: 'lightmem',
        LIGHTMEM_KAFKA_SASL_PASSWORD: 'kafka-pw ',
        LIGHTMEM_REGISTRY_USERNAME: 'reg-user',
        LIGHTMEM_REGISTRY_PASSWORD: 'reg-pw',
        LIGHTMEM_REGISTRY_CA: '/etc/tls/registry-ca.pem',
        LIGHTMEM_ES_API_KEY: 'es-key',
        LIGHTMEM_ES_CA: '/etc/tls/es-ca.pem',
        LIGHTMEM_DATA_DIR: dataDir,
      },
    });
    assert.deepEqual(config.kafka.ssl, { ca, cert: '/etc/tls/client.pem', key: '/etc/tls/client.key' });
    // Taken as they are: a secret is never trimmed.
    assert.deepEqual(config.kafka.sasl, {
      mechanism: 'scram-sha-512',
      username: 'lightmem',
      password: 'kafka-pw ',
    });
    assert.equal(config.registry.username, 'reg-user');
    assert.equal(config.registry.password, 'reg-pw');
    assert.deepEqual(config.registry.tls, { ca: '/etc/tls/registry-ca.pem' });
    assert.equal(config.elasticsearch.apiKey, 'es-key');
    assert.deepEqual(config.elasticsearch.tls, { ca: '/etc/tls/es-ca.pem' });
    assert.equal(
      securitySummary(config),
      'kafka: tls+sasl/scram-sha-512, registry: basic+ca, elasticsearch: api-key+ca, temporal: plaintext',
    );
  });

  it('defaults to no TLS and no credentials', () => {
    const config = LightmemConfig.parse({});
    assert.equal(config.kafka.ssl, false);
    assert.equal(config.kafka.sasl, undefined);
    assert.equal(config.registry.username, undefined);
    assert.equal(config.elasticsearch.apiKey, undefined);
    assert.equal(
      securitySummary(config),
      'kafka: plaintext, registry: no auth, elasticsearch: no auth, temporal: plaintext',
    );
  });

  it('merges the file and the environment: LIGHTMEM_KAFKA_SSL=true keeps the file’s CA, false turns TLS off, a password joins the file’s user', () => {
    const file = join(dir, 'merge.json');
    writeFileSync(
      file,
      JSON.stringify({
        kafka: { ssl: { ca: '/file/ca.pem' }, sasl: { mechanism: 'plain', username: 'from-file' } },
        elasticsearch: { username: 'elastic' },
      }),
    );
    const on = loadConfig({
      file,
      env: { LIGHTMEM_KAFKA_SSL: 'true', LIGHTMEM_KAFKA_SASL_PASSWORD: 'p1', LIGHTMEM_ES_PASSWORD: 'p2' },
    });
    assert.deepEqual(on.kafka.ssl, { ca: '/file/ca.pem' });
    assert.deepEqual(on.kafka.sasl, { mechanism: 'plain', username: 'from-file', password: 'p1' });
    assert.equal(on.elasticsearch.password, 'p2');
    const off = loadConfig({
      file,
      env: { LIGHTMEM_KAFKA_SSL: 'false', LIGHTMEM_KAFKA_SASL_PASSWORD: 'p1', LIGHTMEM_ES_PASSWORD: 'p2' },
    });
    assert.equal(off.kafka.ssl, false);
    const plainTls = loadConfig({ env: { LIGHTMEM_KAFKA_SSL: '1', LIGHTMEM_DATA_DIR: dataDir } });
    assert.deepEqual(plainTls.kafka.ssl, {});
  });

  it('refuses incomplete or conflicting credentials naming the field, without quoting any secret', () => {
    const cases: [Record<string, string>, string][] = [
      [{ LIGHTMEM_ES_USERNAME: 'elastic' }, 'elasticsearch.password'],
      [{ LIGHTMEM_ES_PASSWORD: 'hunter2-es' }, 'elasticsearch.username'],
      [
        { LIGHTMEM_ES_API_KEY: 'hunter2-key', LIGHTMEM_ES_USERNAME: 'u', LIGHTMEM_ES_PASSWORD: 'hunter2-es' },
        'elasticsearch.apiKey',
      ],
      [{ LIGHTMEM_REGISTRY_PASSWORD: 'hunter2-reg' }, 'registry.username'],
      [{ LIGHTMEM_KAFKA_SASL_PASSWORD: 'hunter2-kafka' }, 'kafka.sasl.mechanism'],
      [
        {
          LIGHTMEM_KAFKA_SASL_MECHANISM: 'gssapi',
          LIGHTMEM_KAFKA_SASL_USERNAME: 'u',
          LIGHTMEM_KAFKA_SASL_PASSWORD: 'hunter2-kafka',
        },
        'kafka.sasl.mechanism',
      ],
      [{ LIGHTMEM_KAFKA_SSL_CERT: '/c.pem' }, 'kafka.ssl.key'],
    ];
    for (const [env, field] of cases) {
      assert.throws(
        () => loadConfig({ env: { ...env, LIGHTMEM_DATA_DIR: dataDir } }),
        (error: unknown) => {
          assert.ok(error instanceof LightmemError);
          assert.equal(error.code, 'config_invalid');
          assert.equal(error.field, field, error.message);
          assert.ok(!/hunter2/.test(error.message), error.message);
          return true;
        },
      );
    }
    assert.throws(() => LightmemConfig.parse({ kafka: { ssl: { caFile: '/x' } } }), /Unrecognized key/);
  });
});

describe('connection security: the Kafka client', () => {
  const security = (ssl: unknown, sasl?: unknown) =>
    kafkaSecurityOf(LightmemConfig.parse({ kafka: { ssl, ...(sasl === undefined ? {} : { sasl }) } }).kafka);

  it('passes no ssl and no sasl when none is configured (the plaintext listener)', () => {
    const options = kafkaClientOptions(['b:9092'], 'id', silentLogger, security(false));
    assert.equal('ssl' in options, false);
    assert.equal('sasl' in options, false);
    assert.deepEqual(options.brokers, ['b:9092']);
  });

  it('passes sasl as configured, and TLS with the CA, certificate and key files read', () => {
    const ca = pemFile('ca.pem');
    const cert = pemFile('client.pem');
    const key = pemFile('client.key', 'PRIVATE KEY');
    const sasl = { mechanism: 'scram-sha-256', username: 'u', password: 'p' };
    const options = kafkaClientOptions(
      ['b:9093'],
      'id',
      silentLogger,
      security({ ca, cert, key, rejectUnauthorized: true }, sasl),
    );
    assert.deepEqual(options.sasl, sasl);
    assert.ok(typeof options.ssl === 'object');
    assert.match(String(options.ssl.ca && (options.ssl.ca as Buffer[])[0]), /MIIBca\.pem/);
    assert.match(String(options.ssl.cert), /MIIBclient\.pem/);
    assert.ok(Buffer.isBuffer(options.ssl.key));
    assert.match(options.ssl.key.toString('utf8'), /BEGIN PRIVATE KEY/);
    assert.equal(options.ssl.rejectUnauthorized, true);
    // The real constructor takes them (it connects later).
    assert.ok(kafkaClient(['b:9093'], 'id', silentLogger, security({ ca }, sasl)) instanceof Kafka);
  });

  it('`true` or an empty TLS object: TLS with the system CAs', () => {
    assert.equal(kafkaClientOptions(['b'], 'id', silentLogger, security(true)).ssl, true);
    assert.equal(kafkaClientOptions(['b'], 'id', silentLogger, security({})).ssl, true);
  });

  it('an unreadable or non-PEM file fails when the client is built, naming the setting', () => {
    assert.throws(
      () => kafkaClientOptions(['b'], 'id', silentLogger, security({ ca: join(dir, 'nope.pem') })),
      (error: unknown) =>
        error instanceof LightmemError &&
        error.code === 'config_invalid' &&
        error.field === 'kafka.ssl.ca' &&
        error.message.includes('nope.pem') &&
        error.message.includes('ENOENT'),
    );
    const der = join(dir, 'key.der');
    writeFileSync(der, Buffer.from([0x30, 0x82, 0x01, 0x0a]));
    assert.throws(
      () => kafkaClientOptions(['b'], 'id', silentLogger, security({ cert: pemFile('c2.pem'), key: der })),
      (error: unknown) =>
        error instanceof LightmemError &&
        error.field === 'kafka.ssl.key' &&
        /not a PEM file/.test(error.message),
    );
  });

  it('kafkajs’s log lines reach our log without the SASL settings', async () => {
    const password = 'kafka-secret-in-log-test';
    const output = await capturingStderr(() => {
      const options = kafkaClientOptions(['b'], 'id', stderrLogger('debug'), {
        sasl: { mechanism: 'plain', username: 'u', password },
      });
      const log = options.logCreator!(logLevel.DEBUG);
      // kafkajs's entries carry whatever its caller put there; only message, logger and error are kept.
      log({
        namespace: 'Connection',
        level: logLevel.ERROR,
        label: 'ERROR',
        log: {
          timestamp: 'now',
          logger: 'kafkajs',
          message: 'Connection error: SASL PLAIN authentication failed',
          error: 'Invalid username or password',
          sasl: { mechanism: 'plain', username: 'u', password },
        },
      });
    });
    assert.match(output, /SASL PLAIN authentication failed/);
    assert.ok(!output.includes(password));
  });

  it('recognises the broker refusing the credentials, also when wrapped', () => {
    const refused = Object.assign(new Error('SASL PLAIN authentication failed'), {
      name: 'KafkaJSSASLAuthenticationError',
    });
    assert.equal(isKafkaAuthFailure(refused), true);
    assert.equal(isKafkaAuthFailure({ name: 'KafkaJSNonRetriableError', originalError: refused }), true);
    assert.equal(isKafkaAuthFailure(new Error('connect ECONNREFUSED')), false);
  });
});

describe('connection security: the Elasticsearch and registry client options', () => {
  it('Elasticsearch: an API key, or basic credentials, and the CA file read', () => {
    const ca = pemFile('es-ca.pem');
    const withKey = elasticsearchClientOptions({
      node: 'https://es:9200',
      security: elasticsearchSecurityOf(
        LightmemConfig.parse({ elasticsearch: { apiKey: 'k', tls: { ca, rejectUnauthorized: true } } })
          .elasticsearch,
      ),
    });
    assert.deepEqual(withKey.auth, { apiKey: 'k' });
    assert.match(String(withKey.tls?.ca), /MIIBes-ca\.pem/);
    assert.equal(withKey.tls?.rejectUnauthorized, true);
    const basic = elasticsearchClientOptions({
      node: 'https://es:9200',
      security: { username: 'elastic', password: 'pw' },
    });
    assert.deepEqual(basic.auth, { username: 'elastic', password: 'pw' });
    assert.equal(basic.tls, undefined);
    const none = elasticsearchClientOptions({ node: 'http://es:9200' });
    assert.equal(none.auth, undefined);
    assert.throws(
      () => elasticsearchClientOptions({ node: 'https://es', security: { tls: { ca: join(dir, 'x.pem') } } }),
      (error: unknown) => error instanceof LightmemError && error.field === 'elasticsearch.tls.ca',
    );
  });

  it('Elasticsearch: a missing privilege (403) is a non-retryable config error, not an internal one', () => {
    const body = {
      error: { type: 'security_exception', reason: 'action [indices:admin/create] is unauthorized' },
    };
    // What the client throws when the server answers 403 (its diagnostic fields are not read).
    const forbidden = new errors.ResponseError({
      body,
      statusCode: 403,
      headers: {},
      warnings: null,
      meta: {} as ConstructorParameters<typeof errors.ResponseError>[0]['meta'],
    });
    const error = esFailure(forbidden, 'creating the index');
    assert.equal(error.code, 'config_invalid');
    assert.equal(error.retryable, false);
    assert.equal(error.field, 'elasticsearch');
    assert.match(error.message, /HTTP 403.*privilege/);
  });

  it('Temporal: TLS (CA, client certificate, server name) and an API key from config and environment', () => {
    const [ca, cert, key] = [
      pemFile('temporal-ca.pem'),
      pemFile('temporal.crt'),
      pemFile('temporal.key', 'PRIVATE KEY'),
    ];
    const config = loadConfig({
      env: {
        LIGHTMEM_TEMPORAL_CA: ca,
        LIGHTMEM_TEMPORAL_CERT: cert,
        LIGHTMEM_TEMPORAL_KEY: key,
        LIGHTMEM_TEMPORAL_SERVER_NAME: 'ns.tmprl.cloud',
        LIGHTMEM_TEMPORAL_API_KEY: 'tk-secret',
        LIGHTMEM_TEMPORAL_ADDRESS: 'ns.tmprl.cloud:7233',
      },
    });
    const options = temporalConnectionOptions(temporalEndpoint(config));
    assert.equal(options.address, 'ns.tmprl.cloud:7233');
    assert.equal(options.apiKey, 'tk-secret');
    assert.ok(options.tls !== undefined && options.tls !== true);
    assert.equal(options.tls.serverNameOverride, 'ns.tmprl.cloud');
    assert.match(String(options.tls.serverRootCACertificate), /MIIBtemporal-ca\.pem/);
    assert.match(String(options.tls.clientCertPair?.crt), /MIIBtemporal\.crt/);
    assert.match(String(options.tls.clientCertPair?.key), /MIIBtemporal\.key/);
    // An API key alone: TLS with the system CAs. Nothing: plaintext (the dev server).
    assert.equal(temporalConnectionOptions({ address: 'a:1', security: { apiKey: 'k' } }).tls, true);
    assert.equal(temporalConnectionOptions({ address: 'a:1' }).tls, undefined);
    assert.throws(
      () =>
        temporalConnectionOptions({ address: 'a:1', security: { tls: { ca: join(dir, 'missing.pem') } } }),
      (error: unknown) => error instanceof LightmemError && error.field === 'temporal.tls.ca',
    );
    assert.throws(
      () => loadConfig({ env: { LIGHTMEM_TEMPORAL_CERT: cert } }),
      (error: unknown) => error instanceof LightmemError && /temporal\.tls\.key/.test(error.message),
    );
  });

  it('LIGHTMEM_RATE_LIMIT sets the per-key rate (burst twice that)', () => {
    const { rateLimit } = loadConfig({ env: { LIGHTMEM_RATE_LIMIT: '500' } }).server;
    assert.deepEqual(rateLimit, { requestsPerSecond: 500, burst: 1_000 });
    assert.deepEqual(loadConfig({ env: {} }).server.rateLimit, { requestsPerSecond: 50, burst: 100 });
  });

  it('Elasticsearch: a node that is not a URL is reported without the credentials it holds', () => {
    assert.throws(
      () => elasticsearchClient({ node: 'https://elastic:hunter2@es host:9200' }),
      (error: unknown) =>
        error instanceof LightmemError && error.field === 'node' && !error.message.includes('hunter2'),
    );
  });

  it('registry: basic auth header and client config; the CA file read', () => {
    assert.deepEqual(registryAuthHeaders({ username: 'u', password: 'p' }), {
      Authorization: `Basic ${Buffer.from('u:p').toString('base64')}`,
    });
    assert.deepEqual(registryAuthHeaders(undefined), {});
    const security = registrySecurityOf(
      LightmemConfig.parse({ registry: { username: 'u', password: 'p', tls: { ca: pemFile('reg-ca.pem') } } })
        .registry,
    );
    const config = registryClientConfig('https://registry', security);
    assert.deepEqual(config.basicAuthCredentials, { credentialsSource: 'USER_INFO', userInfo: 'u:p' });
    assert.ok(config.createAxiosDefaults?.httpsAgent);
    assert.equal(registryClientConfig('http://registry', undefined).basicAuthCredentials, undefined);
    assert.throws(
      () => registryClient('https://registry', { tls: { ca: join(dir, 'none.pem') } }),
      (error: unknown) => error instanceof LightmemError && error.field === 'registry.tls.ca',
    );
  });
});

describe('connection security: logs', () => {
  it('redacts secret-looking fields (also sasl, auth, credentials) and credentials inside texts', async () => {
    const output = await capturingStderr(() => {
      const logger = stderrLogger('debug', { apiKey: 'k-base-secret' });
      logger.info('connecting to https://elastic:pw-in-url@es.example:9200/', {
        password: 'pw-field',
        sasl: 'plain:u:pw-sasl',
        auth: 'pw-auth',
        credentials: 'pw-credentials',
        authorization: 'Basic dTpwdy1oZWFkZXI=',
        error: 'request failed: Authorization: Bearer abcdefghijklmnop-token',
        node: 'https://u:pw-in-field-url@es:9200',
        brokers: 'b1:9092,b2:9092',
      });
    });
    for (const secret of [
      'k-base-secret',
      'pw-in-url',
      'pw-field',
      'pw-sasl',
      'pw-auth',
      'pw-credentials',
      'dTpwdy1oZWFkZXI',
      'abcdefghijklmnop-token',
      'pw-in-field-url',
    ]) {
      assert.ok(!output.includes(secret), `${secret} leaked: ${output}`);
    }
    const line = JSON.parse(output) as Record<string, unknown>;
    assert.equal(line['message'], 'connecting to https://[redacted]@es.example:9200/');
    assert.equal(line['node'], 'https://[redacted]@es:9200');
    assert.equal(line['brokers'], 'b1:9092,b2:9092');
    assert.equal(line['password'], '[redacted]');
  });

  it('strips user:password@ from URLs only', () => {
    assert.equal(withoutUrlCredentials('http://127.0.0.1:9200/a@b'), 'http://127.0.0.1:9200/a@b');
    assert.equal(
      withoutUrlCredentials('x https://u:p@h/ y http://t@h2'),
      'x https://[redacted]@h/ y http://[redacted]@h2',
    );
    assert.equal(redactText('ApiKey c2VjcmV0LWtleQ=='), 'ApiKey [redacted]');
  });
});

/**
 * The real clients against HTTPS servers of our own (a self-signed certificate for 127.0.0.1, made with
 * openssl): the CA setting makes TLS work, and the credentials go out in the Authorization header.
 */

describe(
  'connection security: real clients over TLS with a private CA',
  { skip: !haveOpenssl && 'no openssl' },
  () => {
    let caFile = '';
    let key = '';
    let cert = '';
    const servers: Server[] = [];

    before(() => {
      const files = selfSigned(dir, 'server', '/CN=127.0.0.1', 'IP:127.0.0.1');
      caFile = files.cert;
      key = readFileSync(files.key, 'utf8');
      cert = readFileSync(files.cert, 'utf8');
    });
    after(async () => {
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    });

    /** An HTTPS server answering every request with `answer`; it keeps the headers it saw. */
    async function fakeServer(
      answer: (path: string) => { status: number; body: unknown; headers?: Record<string, string> },
    ): Promise<{ url: string; seen: IncomingHttpHeaders[] }> {
      const seen: IncomingHttpHeaders[] = [];
      const server = createServer({ key, cert }, (request, response) => {
        seen.push(request.headers);
        request.resume();
        request.on('end', () => {
          const { status, body, headers } = answer(request.url ?? '/');
          response.writeHead(status, { 'content-type': 'application/json', ...headers });
          response.end(JSON.stringify(body));
        });
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
    }

    const subjectOf = (topic: string) => `${topic}-value`;

    it('registry: basic credentials over TLS with the configured CA; without it the certificate is refused', async () => {
      const registry = await fakeServer(() => ({
        status: 200,
        body: { subject: 'x', id: 7, version: 1, schema: '"string"' },
      }));
      const password = 'registry-pw-secret';
      const codec = await RegistryAvroCodec.open(
        { url: registry.url, subjectOf, security: { username: 'reg', password, tls: { ca: caFile } } },
        [Topics.raw],
      );
      await codec.close();
      assert.equal(
        registry.seen[0]?.authorization,
        `Basic ${Buffer.from(`reg:${password}`).toString('base64')}`,
      );
      await assert.rejects(
        RegistryAvroCodec.open({ url: registry.url, subjectOf, security: { username: 'reg', password } }, [
          Topics.raw,
        ]),
        (error: unknown) =>
          error instanceof LightmemError && error.retryable && /certificate/i.test(error.message),
      );
    });

    it('registry: refused credentials are a non-retryable config error that quotes no secret', async () => {
      const registry = await fakeServer(() => ({
        status: 401,
        body: { error_code: 40101, message: 'Unauthorized' },
      }));
      const password = 'wrong-registry-pw';
      const output = await capturingStderr(async () => {
        await assert.rejects(
          RegistryAvroCodec.open(
            { url: registry.url, subjectOf, security: { username: 'reg', password, tls: { ca: caFile } } },
            [Topics.raw],
          ),
          (error: unknown) =>
            error instanceof LightmemError &&
            error.code === 'config_invalid' &&
            !error.retryable &&
            /credentials refused \(HTTP 401/.test(error.message) &&
            !error.message.includes(password),
        );
      });
      assert.ok(!output.includes(password));
    });

    it('Elasticsearch: the API key or basic credentials over TLS with the configured CA', async () => {
      const es = await fakeServer(() => ({
        status: 200,
        body: { cluster_name: 'fake', status: 'green' },
        headers: { 'x-elastic-product': 'Elasticsearch' },
      }));
      const apiKey = 'ZXMta2V5LXNlY3JldA==';
      const client = elasticsearchClient({ node: es.url, security: { apiKey, tls: { ca: caFile } } });
      try {
        assert.equal((await client.cluster.health()).status, 'green');
      } finally {
        await client.close();
      }
      assert.equal(es.seen.at(-1)?.authorization, `ApiKey ${apiKey}`);
      const basic = elasticsearchClient({
        node: es.url,
        security: { username: 'elastic', password: 'es-pw', tls: { ca: caFile } },
      });
      try {
        await basic.cluster.health();
      } finally {
        await basic.close();
      }
      assert.equal(es.seen.at(-1)?.authorization, `Basic ${Buffer.from('elastic:es-pw').toString('base64')}`);
      const untrusted = elasticsearchClient({ node: es.url, security: { apiKey } });
      try {
        await assert.rejects(untrusted.cluster.health(), /certificate/i);
      } finally {
        await untrusted.close();
      }
    });

    it('Elasticsearch: refused credentials are a non-retryable config error that quotes no secret', async () => {
      const es = await fakeServer(() => ({
        status: 401,
        body: {
          error: { type: 'security_exception', reason: 'unable to authenticate with provided credentials' },
          status: 401,
        },
        headers: { 'x-elastic-product': 'Elasticsearch', 'www-authenticate': 'ApiKey' },
      }));
      const apiKey = 'd3JvbmctZXMta2V5LXNlY3JldA==';
      const output = await capturingStderr(async () => {
        await assert.rejects(
          ElasticsearchTenantDirectory.open({
            node: es.url,
            indexPrefix: 'lightmem-',
            security: { apiKey, tls: { ca: caFile } },
          }),
          (error: unknown) =>
            error instanceof LightmemError &&
            error.code === 'config_invalid' &&
            !error.retryable &&
            /HTTP 401/.test(error.message) &&
            !error.message.includes(apiKey),
        );
      });
      assert.ok(!output.includes(apiKey));
      assert.equal(es.seen[0]?.authorization, `ApiKey ${apiKey}`);
    });
  },
);
