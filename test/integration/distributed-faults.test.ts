import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Partitioners } from 'kafkajs';
import { collect, lastJsonLine, runCli, spawnCli, tempDir } from '../support/cli.js';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import { ElasticsearchMemoryStore } from '../../services/adapters/elasticsearch/elasticsearch-memory-store.js';
import { KafkaEventLog } from '../../services/adapters/kafka/kafka-event-log.js';
import { kafkaTopic } from '../../services/adapters/kafka/kafka-topics.js';
import { Topics, type TopicName } from '../../services/core/model/topics.js';
import { systemClock } from '../../services/core/ports/clock.js';
import type { LightmemConfigInput } from '../../services/core/config.js';
import type { DeadLetter } from '../../services/core/model/generated.js';
import { makeEntry } from '../support/memory-fixtures.js';
import { fetchModel } from './support/models.js';
import { deleteTopics, servers, testKafka, testLogger } from './support/servers.js';
import {
  allMemoryIds,
  distributedConfig,
  infra,
  locomoSubset,
  modelEnv,
  startStages,
  stopStages,
  waitUntil,
  withDeadline,
  writeConfig,
  type Stage,
  type StageProcess,
} from './support/distributed.js';

/**
 * Faults on real servers (acceptance of the distributed-mode issue): each run ingests the same two LoCoMo
 * conversations through four stage processes and must end with exactly the memories of an undisturbed
 * embedded run — nothing lost, nothing duplicated.
 */
const shared: LightmemConfigInput = { pipeline: { batchSize: 16 } };
/** A run takes 1–3 minutes here; past this, it is stuck: fail with what each stage had done. */
const runDeadlineMs = 10 * 60_000;
const inputOf: Record<Stage, TopicName> = {
  compressor: Topics.raw,
  segmenter: Topics.compressed,
  summarizer: Topics.segments,
  indexer: Topics.memories,
  applier: Topics.memoryOps,
};

describe(
  'distributed pipeline under faults (real Kafka, registry, Elasticsearch)',
  { timeout: 60 * 60_000 },
  () => {
    const dir = tempDir('distributed-faults');
    let subset: string;
    let reference: string[];
    const cleanups: (() => Promise<void>)[] = [];

    before(async () => {
      await fetchModel();
      subset = locomoSubset(dir.path, 2);
      const embeddedDir = join(dir.path, 'embedded');
      const config = writeConfig(dir.path, 'embedded', { ...shared, mode: 'embedded' });
      lastJsonLine(
        await runCli(
          ['ingest', subset, '--format', 'locomo', '--data-dir', embeddedDir, '--config', config, '--json'],
          modelEnv(),
        ),
      );
      const store = SqliteMemoryStore.open(join(embeddedDir, 'memories.db'));
      try {
        reference = (await allMemoryIds(store)).sort();
      } finally {
        await store.close();
      }
      assert.ok(reference.length > 300, `reference run made ${reference.length} memories`);
    });

    after(async () => {
      for (const cleanup of cleanups) await cleanup().catch(() => undefined);
      dir.remove();
    });

    interface Run {
      readonly config: LightmemConfigInput;
      readonly file: string;
      readonly stages: Map<Stage, StageProcess>;
      readonly monitor: KafkaEventLog;
      committed(stage: Stage): Promise<number>;
    }

    /** One distributed ingest of the subset with `fault` injected while it runs; returns the memory ids. */
    async function distributedRun(
      label: string,
      fault: (run: Run) => Promise<void>,
    ): Promise<{ ids: string[]; committed: Record<Stage, number> }> {
      const config = distributedConfig(label, shared);
      const file = writeConfig(dir.path, label, config);
      const layout = { prefix: config.kafka!.topicPrefix!, partitions: 3, replicationFactor: 1 };
      cleanups.push(() => deleteTopics(layout));
      const init = await runCli(['admin', 'init', '--config', file], modelEnv());
      assert.equal(init.code, 0, init.stderr);
      const monitor = await KafkaEventLog.open({
        brokers: servers.kafkaBrokers,
        clientId: 'lightmem-test-monitor',
        registryUrl: servers.registryUrl,
        topics: layout,
        instanceId: 'monitor',
        logger: testLogger,
        clock: systemClock,
      });
      const stages = await startStages(file, modelEnv());
      const run: Run = {
        config,
        file,
        stages,
        monitor,
        committed: (stage) => monitor.committedOffset(stage, inputOf[stage]).catch(() => 0),
      };
      try {
        const child = spawnCli(
          ['ingest', subset, '--format', 'locomo', '--config', file, '--json'],
          modelEnv(),
        );
        const ingest = collect(child);
        await fault(run);
        const result = await withDeadline(ingest, runDeadlineMs, async () => {
          const lags = await Promise.all(
            (Object.keys(inputOf) as Stage[]).map(async (s) => `${s}: ${await run.committed(s)}`),
          );
          const dead = [...stages.values()].filter((p) => !p.alive).map((p) => p.stage);
          child.kill('SIGKILL');
          return `ingest did not finish in ${runDeadlineMs / 1000} s; committed ${lags.join(', ')}; stages not running: ${dead.join(', ') || 'none'}`;
        });
        const summary = lastJsonLine(result) as { accepted: number };
        assert.ok(summary.accepted > 700);
        // The services rode the fault out: none of them exited (nothing would restart it in production
        // but the orchestrator, and a stage that exits on a broker hiccup is a crash loop).
        assert.deepEqual(
          [...stages.values()].filter((p) => !p.alive).map((p) => p.stage),
          [],
          'every stage process is still running',
        );
        const store = await ElasticsearchMemoryStore.open({
          node: servers.elasticsearchUrl,
          indexPrefix: config.elasticsearch!.indexPrefix!,
        });
        const committed = {} as Record<Stage, number>;
        for (const stage of Object.keys(inputOf) as Stage[]) committed[stage] = await run.committed(stage);
        try {
          return { ids: await allMemoryIds(store), committed };
        } finally {
          await store.close();
        }
      } catch (error) {
        for (const p of stages.values()) console.error(`--- ${p.stage} ---\n${p.log.slice(-3000)}`);
        throw error;
      } finally {
        await stopStages(stages);
        await monitor.close();
      }
    }

    it('SIGKILL of each stage process mid-stream, then a restart: exactly the undisturbed memories', async () => {
      const kills: { stage: Stage; at: number }[] = [];
      const { ids, committed } = await distributedRun('kill', async (run) => {
        for (const stage of ['compressor', 'segmenter', 'summarizer', 'indexer'] as const) {
          // Mid-stream by construction, not by timing: the stage has committed some of its input and has
          // more to do (the ingest ends only once every stage has committed all of its input).
          let at = 0;
          await waitUntil(async () => {
            at = await run.committed(stage);
            return at > 0 && at < (await run.monitor.endOffset(inputOf[stage]).catch(() => 0));
          }, `${stage} to have committed some but not all of its input`);
          await run.stages.get(stage)!.kill9();
          kills.push({ stage, at });
          await sleep(300);
          run.stages.get(stage)!.start();
        }
      });
      assert.deepEqual(ids, reference, 'the memories of the undisturbed embedded run');
      // Every kill landed mid-stream: the stage had committed some but not all of its input.
      assert.equal(kills.length, 4);
      for (const kill of kills) {
        assert.ok(
          kill.at > 0 && kill.at < committed[kill.stage],
          `${kill.stage} killed at ${kill.at} of ${committed[kill.stage]}`,
        );
      }
    });

    const outages = [
      {
        title: 'a Kafka broker restart',
        label: 'broker',
        server: 'kafka',
        after: 'segmenter',
        downMs: 2_000,
      },
      {
        title: 'Elasticsearch unavailable for 30 s',
        label: 'es-down',
        server: 'elasticsearch',
        after: 'indexer',
        downMs: 30_000,
      },
    ] as const;
    for (const outage of outages) {
      it(`${outage.title} mid-stream: exactly the undisturbed memories`, async () => {
        const { ids } = await distributedRun(outage.label, async (run) => {
          await waitUntil(
            async () => (await run.committed(outage.after)) > 0,
            `the ${outage.after} to commit`,
          );
          await infra('down', outage.server);
          await sleep(outage.downMs);
          await infra('up', outage.server);
        });
        assert.deepEqual(ids, reference);
      });
    }

    it('records that fail to decode or that a stage rejects are dead-lettered with their reason; the stage goes on', async () => {
      const { ids } = await distributedRun('poison', async (run) => {
        const layout = { prefix: run.config.kafka!.topicPrefix! };
        const kafka = testKafka('lightmem-test-poison');
        const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
        await producer.connect();
        try {
          // Not Avro in the wire format at all.
          await producer.send({
            topic: kafkaTopic(layout, Topics.raw),
            messages: [{ key: 'x/y', value: Buffer.from('{"not":"avro"}') }],
          });
        } finally {
          await producer.disconnect();
        }
        // Valid Avro, but the indexer refuses it: the tenant id has characters ids may not have.
        await run.monitor.append(Topics.memories, [
          { key: 'bad', value: makeEntry({ tenantId: 'bad tenant!' }) },
        ]);
        // Positions are not records on Kafka (transaction markers take positions): wait for the records.
        let dead: DeadLetter[] = [];
        await waitUntil(async () => {
          dead = (await run.monitor.read(Topics.deadLetters, 0, 100)).map((r) => r.value);
          return dead.length >= 2;
        }, 'two dead letters');
        const undecodable = dead.find((d) => d.stage === 'compressor');
        assert.ok(undecodable, JSON.stringify(dead));
        assert.equal(undecodable.sourceTopic, Topics.raw);
        assert.equal(undecodable.errorCode, 'invalid_input');
        assert.match(undecodable.reason, /wire format/);
        const rejected = dead.find((d) => d.stage === 'indexer');
        assert.ok(rejected, JSON.stringify(dead));
        assert.equal(rejected.sourceTopic, Topics.memories);
        assert.match(rejected.field ?? '', /tenantId$/);
        assert.match(rejected.payload, /bad tenant!/);
      });
      assert.deepEqual(ids, reference, 'the good records were all processed');
    });
  },
);
