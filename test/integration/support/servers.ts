import { randomUUID } from 'node:crypto';
import { AssignerProtocol, Kafka, logLevel, type Admin } from 'kafkajs';
import { infraEndpoints } from '../../../infra/endpoints.js';
import { KafkaEventLog } from '../../../services/adapters/kafka/kafka-event-log.js';
import { registerSchemas } from '../../../services/adapters/kafka/registry-codec.js';
import { kafkaTopic, valueSubject, type TopicLayout } from '../../../services/adapters/kafka/kafka-topics.js';
import { topicSchemas, type TopicName } from '../../../services/core/model/topics.js';
import type { Logger } from '../../../services/core/ports/logger.js';
import { systemClock } from '../../../services/core/ports/clock.js';
import { stderrLogger } from '../../../services/runtime/stderr-logger.js';

/**
 * The real servers of `npm run infra:up` (the integration script brings them up first). Endpoints can be
 * pointed elsewhere with LIGHTMEM_TEST_KAFKA_BROKERS / _REGISTRY_URL / _ES_URL / _TEMPORAL_ADDRESS / _LLM_URL.
 */
export const servers = {
  kafkaBrokers: (process.env['LIGHTMEM_TEST_KAFKA_BROKERS'] ?? infraEndpoints.kafkaBrokers.join(',')).split(
    ',',
  ),
  registryUrl: process.env['LIGHTMEM_TEST_REGISTRY_URL'] ?? infraEndpoints.registryUrl,
  elasticsearchUrl: process.env['LIGHTMEM_TEST_ES_URL'] ?? infraEndpoints.elasticsearchUrl,
  temporalAddress: process.env['LIGHTMEM_TEST_TEMPORAL_ADDRESS'] ?? infraEndpoints.temporalAddress,
  /** The OpenAI-compatible chat server (`/v1` base URL) and its model (LIGHTMEM_TEST_LLM_URL / _MODEL). */
  llmBaseUrl: process.env['LIGHTMEM_TEST_LLM_URL'] ?? infraEndpoints.llmBaseUrl,
  llmModel: process.env['LIGHTMEM_TEST_LLM_MODEL'] ?? infraEndpoints.llmModel,
};

export const testLogger: Logger = stderrLogger(
  (process.env['LIGHTMEM_TEST_LOG'] as 'debug' | undefined) ?? 'error',
);

/** A topic layout no other test run uses (topics and registry subjects carry the prefix). */
export function freshLayout(label: string, partitions = 1): TopicLayout {
  return { prefix: `t-${label}-${randomUUID().slice(0, 8)}.`, partitions, replicationFactor: 1 };
}

const allTopics = Object.keys(topicSchemas) as TopicName[];

/** A Kafka event log on fresh topics, with the schemas registered the way `lightmem admin init` does. */
export async function openKafkaLog(
  layout: TopicLayout,
  overrides: {
    instanceId?: string;
    retryBaseMs?: number;
    retryMaxMs?: number;
    stallTimeoutMs?: number;
    /** The consumer's session timeout (default 30 s) and how often a running batch heartbeats (3 s). */
    sessionTimeoutMs?: number;
    heartbeatMs?: number;
    logger?: Logger;
    /** Wraps the per-user keys of the keyring (base64 of 32 bytes). */
    keyEncryptionKey?: string;
  } = {},
): Promise<KafkaEventLog> {
  await registerSchemas(
    { url: servers.registryUrl, subjectOf: (topic) => valueSubject(layout, topic) },
    allTopics,
  );
  return KafkaEventLog.open({
    brokers: servers.kafkaBrokers,
    clientId: 'lightmem-test',
    registryUrl: servers.registryUrl,
    topics: layout,
    instanceId: overrides.instanceId ?? '0',
    logger: overrides.logger ?? testLogger,
    clock: systemClock,
    ...(overrides.stallTimeoutMs === undefined ? {} : { stallTimeoutMs: overrides.stallTimeoutMs }),
    ...(overrides.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: overrides.sessionTimeoutMs }),
    ...(overrides.heartbeatMs === undefined ? {} : { heartbeatMs: overrides.heartbeatMs }),
    ...(overrides.keyEncryptionKey === undefined
      ? {}
      : { security: { keyEncryptionKey: overrides.keyEncryptionKey } }),
    retryBaseMs: overrides.retryBaseMs ?? 5,
    retryMaxMs: overrides.retryMaxMs ?? 40,
    createTopics: true,
  });
}

/** A quiet kafkajs client of the test broker. */
export function testKafka(clientId: string): Kafka {
  return new Kafka({ clientId, brokers: servers.kafkaBrokers, logLevel: logLevel.NOTHING });
}

/** Deletes every topic of a layout (tests clean up after themselves on the shared broker). */
export async function deleteTopics(layout: TopicLayout): Promise<void> {
  const kafka = testKafka('lightmem-test-cleanup');
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(layout.prefix));
    if (topics.length > 0) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

/**
 * The partitions of `topic` that each member of a stage's consumer group owns, once the group is stable; an
 * empty list while the group has no member or is rebalancing. The group id is the stage name with the topic
 * prefix (docs/operations.md).
 */
export async function groupAssignment(
  admin: Admin,
  layout: TopicLayout,
  group: string,
  topic: TopicName,
): Promise<number[][]> {
  const { groups } = await admin.describeGroups([`${layout.prefix}${group}`]);
  const [described] = groups;
  if (described?.state !== 'Stable') return [];
  const name = kafkaTopic(layout, topic);
  return described.members.map(
    (member) => AssignerProtocol.MemberAssignment.decode(member.memberAssignment)?.assignment[name] ?? [],
  );
}
