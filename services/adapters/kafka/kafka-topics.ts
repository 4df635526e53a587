import type { Admin, ITopicConfig } from 'kafkajs';
import { Topics, type TopicName } from '../../core/model/topics.js';
import { UnavailableError, errorMessage } from '../../core/errors.js';

export interface TopicLayout {
  /** Prefix of every topic name (deployments or test runs sharing one cluster). */
  readonly prefix: string;
  /** Partitions of the keyed data topics (and of each stage's state changelog, co-partitioned). */
  readonly partitions: number;
  readonly replicationFactor: number;
}

export function kafkaTopic(layout: Pick<TopicLayout, 'prefix'>, topic: TopicName): string {
  return `${layout.prefix}${topic}`;
}

/** The compacted changelog that holds a stage's keyed state, co-partitioned with its input. */
export function stateTopic(layout: Pick<TopicLayout, 'prefix'>, group: string): string {
  return `${layout.prefix}lightmem.state.${group}`;
}

/** Subject of a topic's values in the registry (TopicNameStrategy). */
export function valueSubject(layout: Pick<TopicLayout, 'prefix'>, topic: TopicName): string {
  return `${kafkaTopic(layout, topic)}-value`;
}

/**
 * Every data topic with its settings. Data topics keep everything (the raw log is the system of record:
 * replays rebuild memories from it); dead letters are one partition (low volume, read in order by
 * `lightmem stats`) and kept 30 days.
 */
export function dataTopicConfigs(layout: TopicLayout): ITopicConfig[] {
  return (Object.values(Topics) as TopicName[]).map((topic) => ({
    topic: kafkaTopic(layout, topic),
    numPartitions: topic === Topics.deadLetters ? 1 : layout.partitions,
    replicationFactor: layout.replicationFactor,
    configEntries:
      topic === Topics.deadLetters
        ? [{ name: 'retention.ms', value: String(30 * 24 * 3_600_000) }]
        : [
            { name: 'retention.ms', value: '-1' },
            { name: 'retention.bytes', value: '-1' },
          ],
  }));
}

export function stateTopicConfig(layout: TopicLayout, group: string): ITopicConfig {
  return {
    topic: stateTopic(layout, group),
    numPartitions: layout.partitions,
    replicationFactor: layout.replicationFactor,
    configEntries: [
      { name: 'cleanup.policy', value: 'compact' },
      { name: 'min.compaction.lag.ms', value: '0' },
      { name: 'segment.ms', value: String(3_600_000) },
    ],
  };
}

/** Creates the topics that do not exist yet (the admin step; never on the hot path). Returns the created ones. */
export async function ensureTopics(admin: Admin, configs: readonly ITopicConfig[]): Promise<string[]> {
  let existing: string[];
  try {
    existing = await admin.listTopics();
  } catch (error) {
    throw new UnavailableError(`kafka: listing topics failed: ${errorMessage(error)}`, error);
  }
  const missing = configs.filter((config) => !existing.includes(config.topic));
  if (missing.length === 0) return [];
  try {
    await admin.createTopics({ topics: [...missing], waitForLeaders: true });
  } catch (error) {
    // Another process may have created them meanwhile: only a topic that is still missing is a failure.
    const now = await admin.listTopics();
    const still = missing.filter((config) => !now.includes(config.topic));
    if (still.length > 0) {
      throw new UnavailableError(
        `kafka: creating ${still.map((c) => c.topic).join(', ')} failed: ${errorMessage(error)}`,
        error,
      );
    }
  }
  return missing.map((config) => config.topic);
}
