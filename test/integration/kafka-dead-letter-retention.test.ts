import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { loadConfig } from '../../services/runtime/load-config.js';
import { adminInit, topicLayout } from '../../services/runtime/distributed-runtime.js';
import { kafkaTopic } from '../../services/adapters/kafka/kafka-topics.js';
import { Topics } from '../../services/core/model/topics.js';
import { systemClock } from '../../services/core/ports/clock.js';
import { distributedConfig } from './support/distributed.js';
import { deleteTopics, testKafka, testLogger } from './support/servers.js';

describe('lightmem admin init on Kafka', () => {
  it(
    'bounds the dead-letter topic by the configured size and retention, also on a topic that exists',
    { timeout: 120_000 },
    async () => {
      const input = distributedConfig('dead-letters', {
        deadLetters: { maxBytes: 1_048_576, retentionDays: 2 },
      });
      const config = loadConfig({ env: {}, overrides: input });
      const layout = topicLayout(config);
      const kafka = testKafka('lightmem-test-admin');
      const admin = kafka.admin();
      await admin.connect();
      const retention = async (): Promise<Record<string, string | undefined>> => {
        const described = await admin.describeConfigs({
          includeSynonyms: false,
          resources: [
            { type: kafkajs.ConfigResourceTypes.TOPIC, name: kafkaTopic(layout, Topics.deadLetters) },
          ],
        });
        const entries = described.resources[0]?.configEntries ?? [];
        const value = (name: string) => entries.find((entry) => entry.configName === name)?.configValue;
        return { bytes: value('retention.bytes'), ms: value('retention.ms') };
      };
      try {
        await adminInit(config, { logger: testLogger, clock: systemClock });
        assert.deepEqual(await retention(), { bytes: '1048576', ms: String(2 * 24 * 3_600_000) });
        // A later init with other bounds changes the existing topic (created by an earlier version, say).
        await adminInit(
          { ...config, deadLetters: { maxBytes: 4_194_304, retentionDays: 7 } },
          { logger: testLogger, clock: systemClock },
        );
        assert.deepEqual(await retention(), { bytes: '4194304', ms: String(7 * 24 * 3_600_000) });
      } finally {
        await admin.disconnect();
        await deleteTopics(layout);
      }
    },
  );
});
