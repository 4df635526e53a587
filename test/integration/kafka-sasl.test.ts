import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { ensureKafkaScramUser, kafkaSaslEndpoint, kafkaScramUser } from '../../infra/servers/kafka.js';
import { KafkaEventLog } from '../../services/adapters/kafka/kafka-event-log.js';
import { registerSchemas } from '../../services/adapters/kafka/registry-codec.js';
import { valueSubject, type TopicLayout } from '../../services/adapters/kafka/kafka-topics.js';
import { LightmemError } from '../../services/core/errors.js';
import { Topics, conversationKey, topicSchemas, type TopicName } from '../../services/core/model/topics.js';
import { systemClock } from '../../services/core/ports/clock.js';
import { loadConfig } from '../../services/runtime/load-config.js';
import { DistributedRuntime } from '../../services/runtime/distributed-runtime.js';
import { stderrLogger } from '../../services/runtime/stderr-logger.js';
import { makeTurn } from '../support/event-fixtures.js';
import { memoryLogger } from '../support/memory-logger.js';
import { deletePrefix, rawClient } from './support/elasticsearch.js';
import { servers } from './support/servers.js';
import { roundTrip } from './support/round-trip.js';
import { capturingStderr } from '../support/capture-stderr.js';

/**
 * Kafka with SASL: the broker of `npm run infra:up` has a second listener, SASL_PLAINTEXT with PLAIN
 * (infra/servers/kafka.ts; LIGHTMEM_INFRA_KAFKA_SASL_PORT, default 19094), beside the PLAINTEXT one the
 * other suites use. LIGHTMEM_TEST_KAFKA_SASL_BROKERS points the test elsewhere.
 */
const saslBrokers = (
  process.env['LIGHTMEM_TEST_KAFKA_SASL_BROKERS'] ?? kafkaSaslEndpoint.brokers.join(',')
).split(',');
const user = kafkaSaslEndpoint.username;
const password = kafkaSaslEndpoint.password;
const allTopics = Object.keys(topicSchemas) as TopicName[];

/** An admin over the SASL listener, for cleaning up. */
async function deleteSaslTopics(prefix: string): Promise<void> {
  const kafka = new Kafka({
    clientId: 'lightmem-test-sasl-cleanup',
    brokers: saslBrokers,
    sasl: { mechanism: 'plain', username: user, password },
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(prefix));
    if (topics.length > 0) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

describe('Kafka over SASL (PLAIN, the dev broker’s SASL_PLAINTEXT listener)', () => {
  it(
    'a distributed runtime configured from the environment authenticates, produces and consumes, and logs no secret',
    { timeout: 180_000 },
    async () => {
      const id = randomUUID().slice(0, 8);
      const topicPrefix = `t-sasl-${id}.`;
      const indexPrefix = `t-sasl-${id}-`;
      // Secrets come from the environment, as a Kubernetes Secret would provide them. The registry and
      // Elasticsearch of the dev servers run without security and ignore the credentials: they are here to
      // show that configured secrets reach no log line.
      const registryPassword = `registry-secret-${id}`;
      const esApiKey = `es-api-key-secret-${id}`;
      const env = {
        LIGHTMEM_KAFKA_SASL_MECHANISM: 'PLAIN',
        LIGHTMEM_KAFKA_SASL_USERNAME: user,
        LIGHTMEM_KAFKA_SASL_PASSWORD: password,
        LIGHTMEM_REGISTRY_USERNAME: 'lightmem',
        LIGHTMEM_REGISTRY_PASSWORD: registryPassword,
        LIGHTMEM_ES_API_KEY: esApiKey,
      };
      const config = loadConfig({
        env,
        overrides: {
          mode: 'distributed',
          logLevel: 'debug',
          kafka: { brokers: saslBrokers, topicPrefix, partitions: 2 },
          registry: { url: servers.registryUrl },
          elasticsearch: { node: servers.elasticsearchUrl, indexPrefix },
          temporal: { address: servers.temporalAddress, taskQueue: `t-sasl-${id}` },
          consolidation: { enabled: false },
        },
      });
      assert.deepEqual(config.kafka.sasl, { mechanism: 'plain', username: user, password });
      const logger = stderrLogger('debug', { test: 'kafka-sasl' });
      try {
        const output = await capturingStderr(async () => {
          await roundTrip(config, logger, 'sasl-probe', 'over SASL');
        });
        assert.match(output, /distributed runtime opened/);
        assert.match(output, /kafka: plaintext\+sasl\/plain, registry: basic, elasticsearch: api-key/);
        for (const secret of [password, registryPassword, esApiKey]) {
          assert.ok(!output.includes(secret), `a configured secret appears in the log output`);
        }
      } finally {
        await deleteSaslTopics(topicPrefix);
        const client = rawClient();
        await deletePrefix(client, indexPrefix).finally(() => client.close());
      }
    },
  );

  it(
    'a wrong password is refused at once with a non-retryable config error naming kafka.sasl (not retried for minutes)',
    { timeout: 60_000 },
    async () => {
      const layout: TopicLayout = {
        prefix: `t-sasl-bad-${randomUUID().slice(0, 8)}.`,
        partitions: 1,
        replicationFactor: 1,
      };
      await registerSchemas(
        { url: servers.registryUrl, subjectOf: (topic) => valueSubject(layout, topic) },
        allTopics,
      );
      const wrong = `not-the-password-${randomUUID().slice(0, 8)}`;
      const logger = memoryLogger();
      const started = Date.now();
      const failure = await KafkaEventLog.open({
        brokers: saslBrokers,
        clientId: 'lightmem-test-sasl',
        registryUrl: servers.registryUrl,
        security: { sasl: { mechanism: 'plain', username: user, password: wrong } },
        topics: layout,
        instanceId: '0',
        logger,
        clock: systemClock,
        createTopics: true,
      }).then(
        async (log) => {
          await log.close();
          return null;
        },
        (error: unknown) => error,
      );
      const seconds = (Date.now() - started) / 1000;
      assert.ok(failure instanceof LightmemError, `expected a LightmemError, got ${String(failure)}`);
      assert.equal(failure.code, 'config_invalid');
      assert.equal(failure.retryable, false);
      assert.equal(failure.field, 'kafka.sasl');
      assert.match(failure.message, /refused the SASL credentials/);
      assert.match(failure.message, /Invalid username or password/);
      assert.ok(!failure.message.includes(wrong), 'the error message holds no password');
      assert.ok(!JSON.stringify(logger.entries).includes(wrong), 'no log entry holds the password');
      assert.ok(seconds < 20, `refused after ${seconds.toFixed(1)} s`);
    },
  );

  it(
    'a runtime whose config file names the user and whose environment has a wrong password fails to open with that error',
    { timeout: 60_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'lightmem-sasl-'));
      try {
        const file = join(dir, 'config.json');
        writeFileSync(
          file,
          JSON.stringify({
            mode: 'distributed',
            kafka: {
              brokers: saslBrokers,
              topicPrefix: `t-sasl-bad-${randomUUID().slice(0, 8)}.`,
              sasl: { mechanism: 'plain', username: user },
            },
            registry: { url: servers.registryUrl },
            elasticsearch: { node: servers.elasticsearchUrl },
            consolidation: { enabled: false },
          }),
        );
        const config = loadConfig({ env: { LIGHTMEM_KAFKA_SASL_PASSWORD: 'wrong-password-1234' }, file });
        assert.deepEqual(config.kafka.sasl, {
          mechanism: 'plain',
          username: user,
          password: 'wrong-password-1234',
        });
        await assert.rejects(
          DistributedRuntime.open(config, {
            logger: memoryLogger(),
            clock: systemClock,
            models: { embedder: null },
            env: {},
          }),
          (error: unknown) =>
            error instanceof LightmemError &&
            error.code === 'config_invalid' &&
            !error.retryable &&
            error.field === 'kafka.sasl' &&
            !error.message.includes('wrong-password-1234'),
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('Kafka over SASL/SCRAM (the same listener, SCRAM-SHA-256 and -512)', () => {
  before(() => {
    // SCRAM credentials live in the cluster's metadata: set (again) on the running broker.
    ensureKafkaScramUser();
  });

  for (const mechanism of ['scram-sha-256', 'scram-sha-512'] as const) {
    it(`${mechanism}: the event log authenticates, appends (sealed with the user's key) and reads back`, async () => {
      const layout: TopicLayout = {
        prefix: `t-scram-${randomUUID().slice(0, 8)}.`,
        partitions: 1,
        replicationFactor: 1,
      };
      await registerSchemas(
        { url: servers.registryUrl, subjectOf: (topic) => valueSubject(layout, topic) },
        allTopics,
      );
      const sasl = { mechanism, username: kafkaScramUser.username, password: kafkaScramUser.password };
      const log = await KafkaEventLog.open({
        brokers: saslBrokers,
        clientId: 'lightmem-test-scram',
        registryUrl: servers.registryUrl,
        security: { sasl },
        topics: layout,
        instanceId: '0',
        logger: memoryLogger(),
        clock: systemClock,
        createTopics: true,
      });
      try {
        const turns = [0, 1, 2].map((i) => makeTurn(i));
        await log.append(
          Topics.raw,
          turns.map((turn) => ({ key: conversationKey(turn), value: turn })),
        );
        const read = await log.read(Topics.raw, 0, 10);
        assert.deepEqual(
          read.map((record) => record.value.turnId),
          turns.map((turn) => turn.turnId),
        );
      } finally {
        await log.close();
        await deleteSaslTopics(layout.prefix);
      }
      // The wrong password for the same user is refused, naming the setting.
      await assert.rejects(
        KafkaEventLog.open({
          brokers: saslBrokers,
          clientId: 'lightmem-test-scram',
          registryUrl: servers.registryUrl,
          security: { sasl: { ...sasl, password: 'not-the-password' } },
          topics: layout,
          instanceId: '0',
          logger: memoryLogger(),
          clock: systemClock,
        }),
        (error: unknown) =>
          error instanceof LightmemError && error.code === 'config_invalid' && !error.retryable,
      );
    });
  }
});
