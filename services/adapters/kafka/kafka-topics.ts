import kafkajs, { type Admin, type ITopicConfig } from 'kafkajs';
import { Topics, type TopicName } from '../../core/model/topics.js';
import { UnavailableError, errorMessage } from '../../core/errors.js';

export interface TopicLayout {
  /** Prefix of every topic name (deployments or test runs sharing one cluster). */
  readonly prefix: string;
  /** Partitions of the keyed data topics (and of each stage's state changelog, co-partitioned). */
  readonly partitions: number;
  readonly replicationFactor: number;
  /** Retention of the dead-letter topic (config `deadLetters`; default 30 days, 64 MiB). */
  readonly deadLetters?: DeadLetterRetention;
  /** How soon compaction removes destroyed user keys from the brokers' disks (see `keyringTopicConfig`). */
  readonly keyring?: KeyringCompaction;
  /**
   * Prefix of the keyring topic when it is not `prefix`: the pipeline versions of a replay have topics of
   * their own but share the deployment's keyring (one key per user, whichever version reads a record).
   */
  readonly keyringPrefix?: string;
}

export interface KeyringCompaction {
  /** A segment is rolled (and so becomes compactable) at least this often. */
  readonly segmentMs: number;
  /** A destroyed key's record is compacted away within this long of the segment rolling. */
  readonly maxCompactionLagMs: number;
}

/** Keys destroyed by an erasure leave the disks within about 25 minutes (Kafka's cleaner permitting). */
const defaultKeyringCompaction: KeyringCompaction = { segmentMs: 600_000, maxCompactionLagMs: 900_000 };

export interface DeadLetterRetention {
  readonly retentionMs: number;
  /** Kafka's retention.bytes is per partition; the dead-letter topic has one. */
  readonly maxBytes: number;
}

const defaultDeadLetterRetention: DeadLetterRetention = {
  retentionMs: 30 * 24 * 3_600_000,
  maxBytes: 64 * 1024 * 1024,
};

function deadLetterConfigEntries(layout: TopicLayout): { name: string; value: string }[] {
  const retention = layout.deadLetters ?? defaultDeadLetterRetention;
  return [
    { name: 'retention.ms', value: String(retention.retentionMs) },
    { name: 'retention.bytes', value: String(retention.maxBytes) },
  ];
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
 * `lightmem stats`), kept within a retention period and a size cap.
 */
export function dataTopicConfigs(layout: TopicLayout): ITopicConfig[] {
  return (Object.values(Topics) as TopicName[]).map((topic) => ({
    topic: kafkaTopic(layout, topic),
    numPartitions: topic === Topics.deadLetters ? 1 : layout.partitions,
    replicationFactor: layout.replicationFactor,
    configEntries:
      topic === Topics.deadLetters
        ? deadLetterConfigEntries(layout)
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

/** The compacted topic of per-user keys and erasure tombstones (see `UserKeyring`). */
export function keyringTopic(layout: Pick<TopicLayout, 'prefix' | 'keyringPrefix'>): string {
  return `${layout.keyringPrefix ?? layout.prefix}lightmem.user-keys`;
}

/**
 * The keyring topic: one partition (readers apply it in order), compacted soon after a key is destroyed
 * (the destroyed value must leave the disks, not only the readers), tombstones kept a day (a reader that
 * starts meanwhile still learns which keys are gone; after that, an unknown key reads as destroyed too).
 */
export function keyringTopicConfig(layout: TopicLayout): ITopicConfig {
  const compaction = layout.keyring ?? defaultKeyringCompaction;
  return {
    topic: keyringTopic(layout),
    numPartitions: 1,
    replicationFactor: layout.replicationFactor,
    configEntries: [
      { name: 'cleanup.policy', value: 'compact' },
      { name: 'min.compaction.lag.ms', value: '0' },
      { name: 'min.cleanable.dirty.ratio', value: '0.01' },
      { name: 'segment.ms', value: String(compaction.segmentMs) },
      { name: 'max.compaction.lag.ms', value: String(compaction.maxCompactionLagMs) },
      { name: 'delete.retention.ms', value: String(24 * 3_600_000) },
    ],
  };
}

/**
 * Sets the dead-letter topic's retention to the configured one (the admin step, each time: a topic
 * created by an earlier version, or before the configuration changed, gets the current bounds).
 */
export async function applyDeadLetterRetention(admin: Admin, layout: TopicLayout): Promise<void> {
  try {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          // A CommonJS export that Node's ESM loader does not name: read it from the default export.
          type: kafkajs.ConfigResourceTypes.TOPIC,
          name: kafkaTopic(layout, Topics.deadLetters),
          configEntries: deadLetterConfigEntries(layout),
        },
      ],
    });
  } catch (error) {
    throw new UnavailableError(
      `kafka: setting the dead-letter retention failed: ${errorMessage(error)}`,
      error,
    );
  }
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
