import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { infraPorts } from '../endpoints.js';
import { ensureDirs, infraLayout, repoRoot } from '../lib/layout.js';
import { findJava } from '../lib/java.js';
import { runChecked } from '../lib/processes.js';
import { probe, type ServerContext, type ServerSpec } from '../lib/server-spec.js';

const pom = join(repoRoot, 'infra', 'kafka', 'pom.xml');
const version = /<kafka\.version>([^<]+)</.exec(readFileSync(pom, 'utf8'))?.[1] ?? 'unknown';

/**
 * A second listener, SASL_PLAINTEXT with the PLAIN mechanism, beside the PLAINTEXT one every other suite
 * uses: the evidence that lightmem's Kafka clients authenticate (test/integration/kafka-sasl.test.ts). Its
 * port is LIGHTMEM_INFRA_KAFKA_SASL_PORT (default 19094). The user is a fixed test account of this loopback
 * dev broker, not a secret.
 */
function saslPort(): number {
  const value = process.env['LIGHTMEM_INFRA_KAFKA_SASL_PORT'];
  if (value === undefined || value === '') return 19_094;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0 || parsed > 65_535)
    throw new Error(`LIGHTMEM_INFRA_KAFKA_SASL_PORT must be a port number, got ${value}`);
  return parsed;
}

export const kafkaSaslEndpoint = {
  brokers: [`127.0.0.1:${saslPort()}`],
  mechanism: 'plain',
  username: 'lightmem-test',
  password: 'lightmem-test-sasl-password',
} as const;

/**
 * The SCRAM account of the SASL listener (SCRAM-SHA-256 and -512). SCRAM credentials live in the cluster's
 * metadata, not in a file: `ensureKafkaScramUser` sets them on the running broker. A fixed test account of
 * this loopback dev broker, not a secret.
 */
export const kafkaScramUser = {
  username: 'lightmem-scram',
  password: 'lightmem-test-scram-password',
} as const;

function tlsPort(): number {
  const value = process.env['LIGHTMEM_INFRA_KAFKA_TLS_PORT'];
  const port = value === undefined ? 19095 : Number(value);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`LIGHTMEM_INFRA_KAFKA_TLS_PORT must be a port number, got ${value}`);
  }
  return port;
}

/**
 * A third listener, SASL_SSL (TLS, then SCRAM-SHA-256/512 or PLAIN): what a production cluster looks like,
 * the evidence that lightmem's TLS options for Kafka work (test/integration/kafka-tls.test.ts). The broker's
 * certificate is signed by a private CA made here with openssl (the listener is left out when openssl is
 * missing); clients trust `ca`. Port LIGHTMEM_INFRA_KAFKA_TLS_PORT (default 19095).
 */
export function kafkaTlsEndpoint(layout = infraLayout()): {
  brokers: string[];
  ca: string;
  keystore: string;
} {
  const dir = join(layout.server('kafka').config, 'tls');
  return {
    brokers: [`127.0.0.1:${tlsPort()}`],
    ca: join(dir, 'ca.pem'),
    keystore: join(dir, 'broker-keystore.pem'),
  };
}

function haveOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The CA and the broker's key and certificate (PEM, unencrypted PKCS#8 key then the certificate: Kafka's
 * PEM keystore), made once. Returns false when openssl is missing.
 */
function ensureBrokerCertificates(layout: ReturnType<typeof infraLayout>): boolean {
  const { ca, keystore } = kafkaTlsEndpoint(layout);
  if (existsSync(keystore)) return true;
  if (!haveOpenssl()) return false;
  const dir = join(layout.server('kafka').config, 'tls');
  ensureDirs(dir);
  const file = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'ignore' });
  };
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    file('ca.key'),
    '-out',
    ca,
    '-days',
    '3650',
    '-subj',
    '/CN=lightmem test CA',
  );
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    file('broker.key'),
    '-out',
    file('broker.csr'),
    '-subj',
    '/CN=127.0.0.1',
  );
  writeFileSync(file('broker.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    'x509',
    '-req',
    '-in',
    file('broker.csr'),
    '-CA',
    ca,
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-out',
    file('broker.pem'),
    '-days',
    '3650',
    '-extfile',
    file('broker.ext'),
  );
  openssl('pkcs8', '-topk8', '-nocrypt', '-in', file('broker.key'), '-out', file('broker.pk8'));
  writeFileSync(
    keystore,
    readFileSync(file('broker.pk8'), 'utf8') + readFileSync(file('broker.pem'), 'utf8'),
  );
  return true;
}

function libsDir(context: Pick<ServerContext, 'layout'>): string {
  return join(context.layout.installs, `kafka-${version}`, 'libs');
}

/**
 * Creates (or resets) the SCRAM user on the running broker of `npm run infra:up`, for both mechanisms,
 * with Kafka's own ConfigCommand over the PLAINTEXT listener (the Admin API's AlterUserScramCredentials;
 * kafkajs has no such call). Idempotent.
 */
export function ensureKafkaScramUser(layout = infraLayout()): void {
  const java = findJava(17);
  const { username, password } = kafkaScramUser;
  // One mechanism per request: the broker refuses two credentials of one user in one request.
  for (const mechanism of ['SCRAM-SHA-256', 'SCRAM-SHA-512']) {
    runChecked(
      java.java,
      [
        '-Xmx128m',
        '-XX:TieredStopAtLevel=1',
        '-cp',
        join(libsDir({ layout }), '*'),
        'kafka.admin.ConfigCommand',
        '--bootstrap-server',
        `127.0.0.1:${infraPorts.kafka}`,
        '--alter',
        '--entity-type',
        'users',
        '--entity-name',
        username,
        '--add-config',
        `${mechanism}=[iterations=4096,password=${password}]`,
      ],
      `creating the Kafka ${mechanism} test user`,
    );
  }
}

/** Single-node Apache Kafka 4.x in KRaft combined mode (broker + controller in one JVM), jars from Maven Central. */
export const kafkaServer: ServerSpec = {
  name: 'kafka',
  summary: `Apache Kafka ${version}, KRaft combined mode`,
  ports: [infraPorts.kafka, infraPorts.kafkaController, saslPort(), tlsPort()],
  endpoint: `127.0.0.1:${infraPorts.kafka}`,
  dependsOn: [],
  startTimeoutMs: 90_000,
  stopGraceMs: 30_000,

  async install(context) {
    const libs = libsDir(context);
    const marker = join(libs, '.complete');
    if (existsSync(marker)) return;
    context.say(`resolving Kafka ${version} and its dependencies from Maven Central (mvn)`);
    ensureDirs(libs);
    runChecked(
      'mvn',
      [
        '-q',
        '-B',
        '-f',
        pom,
        `-Dmaven.repo.local=${join(context.layout.cache, 'm2')}`,
        'org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies',
        `-DoutputDirectory=${libs}`,
        '-DincludeScope=runtime',
      ],
      'fetching Kafka with Maven (is `mvn` installed and Maven Central reachable? LIGHTMEM_MAVEN_REPO is not used by mvn; configure a mirror in ~/.m2/settings.xml)',
    );
    writeFileSync(marker, `${new Date().toISOString()}\n`);
  },

  async prepare(context) {
    const { paths } = context;
    const java = findJava(17);
    const libs = libsDir(context);
    const properties = join(paths.config, 'server.properties');
    const tls = ensureBrokerCertificates(context.layout);
    if (!tls) context.say('openssl not found: no SASL_SSL listener (the Kafka TLS tests will skip)');
    const { keystore } = kafkaTlsEndpoint(context.layout);
    const listeners = [
      `PLAINTEXT://127.0.0.1:${infraPorts.kafka}`,
      `SASL_PLAINTEXT://127.0.0.1:${saslPort()}`,
      ...(tls ? [`SASL_SSL://127.0.0.1:${tlsPort()}`] : []),
    ];
    writeFileSync(
      properties,
      [
        '# Written by infra/servers/kafka.ts: single-node KRaft (broker + controller), loopback only.',
        'process.roles=broker,controller',
        'node.id=1',
        `controller.quorum.voters=1@127.0.0.1:${infraPorts.kafkaController}`,
        'controller.listener.names=CONTROLLER',
        `listeners=${[...listeners, `CONTROLLER://127.0.0.1:${infraPorts.kafkaController}`].join(',')}`,
        `advertised.listeners=${listeners.join(',')}`,
        'inter.broker.listener.name=PLAINTEXT',
        'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL',
        // Only the SASL listener authenticates; PLAINTEXT and CONTROLLER stay as they were.
        'listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
        `listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${kafkaSaslEndpoint.username}="${kafkaSaslEndpoint.password}";`,
        'listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
        'listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
        ...(tls
          ? [
              // TLS with the broker's certificate (PEM keystore), then SCRAM (the same users as above).
              'listener.name.sasl_ssl.ssl.keystore.type=PEM',
              `listener.name.sasl_ssl.ssl.keystore.location=${keystore}`,
              'listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512',
              'listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
              'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
            ]
          : []),
        `log.dirs=${join(paths.data, 'kraft')}`,
        'num.partitions=1',
        'default.replication.factor=1',
        'min.insync.replicas=1',
        'offsets.topic.replication.factor=1',
        'offsets.topic.num.partitions=3',
        'transaction.state.log.replication.factor=1',
        'transaction.state.log.min.isr=1',
        'transaction.state.log.num.partitions=3',
        'share.coordinator.state.topic.replication.factor=1',
        'share.coordinator.state.topic.min.isr=1',
        'group.initial.rebalance.delay.ms=0',
        // Topics are created by the admin step (`lightmem admin init`), never by a producer's typo.
        'auto.create.topics.enable=false',
        'delete.topic.enable=true',
        'num.network.threads=2',
        'num.io.threads=2',
        'num.recovery.threads.per.data.dir=1',
        'background.threads=2',
        'log.cleaner.threads=1',
        'log.cleaner.dedupe.buffer.size=8388608',
        'log.segment.bytes=16777216',
        '',
      ].join('\n'),
    );
    const log4j = join(paths.config, 'log4j2.properties');
    writeFileSync(
      log4j,
      [
        'status = warn',
        'shutdownHook = disable',
        'appender.file.type = File',
        'appender.file.name = FILE',
        `appender.file.fileName = ${join(paths.logs, 'server.log')}`,
        'appender.file.append = true',
        'appender.file.layout.type = PatternLayout',
        'appender.file.layout.pattern = [%d] %p %m (%c)%n',
        'rootLogger.level = INFO',
        'rootLogger.appenderRef.file.ref = FILE',
        'logger.request.name = kafka.request.logger',
        'logger.request.level = WARN',
        '',
      ].join('\n'),
    );
    const classpath = `${libs}/*`;
    const jvm = [
      '-Xms256m',
      '-Xmx512m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      `-Dlog4j2.configurationFile=${log4j}`,
      `-Dkafka.logs.dir=${paths.logs}`,
    ];
    // Format the storage once (a cluster id kept beside the data); formatting again would refuse.
    if (!existsSync(join(paths.data, 'kraft', 'meta.properties'))) {
      context.say('formatting KRaft storage');
      const clusterId = kafkaClusterId();
      runChecked(
        java.java,
        [...jvm, '-cp', classpath, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', properties],
        'formatting Kafka storage',
      );
    }
    return { command: java.java, args: [...jvm, '-cp', classpath, 'kafka.Kafka', properties] };
  },

  healthy: () =>
    probe(async () => {
      const kafka = new Kafka({
        clientId: 'lightmem-infra',
        brokers: [`127.0.0.1:${infraPorts.kafka}`],
        logLevel: logLevel.NOTHING,
        connectionTimeout: 1_000,
        requestTimeout: 2_000,
        retry: { retries: 0 },
      });
      const admin = kafka.admin();
      try {
        await admin.connect();
        const cluster = await admin.describeCluster();
        return cluster.brokers.length > 0 && cluster.controller !== null;
      } finally {
        await admin.disconnect();
      }
    }, 5_000),
};

/**
 * A cluster id as Kafka makes them (16 random bytes, URL-safe base64), never starting with '-': the
 * storage tool would take such an id for an option and refuse to format (1 run in 64 failed). Kafka's
 * own Uuid.randomUuid() redraws in that case too.
 */
export function kafkaClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}
