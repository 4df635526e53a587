import type { LightmemConfig } from '../../../services/core/config.js';
import { systemClock } from '../../../services/core/ports/clock.js';
import type { Logger } from '../../../services/core/ports/logger.js';
import { DistributedRuntime, adminInit } from '../../../services/runtime/distributed-runtime.js';
import { Topics, conversationKey } from '../../../services/core/model/topics.js';
import { makeTurn } from '../../support/event-fixtures.js';
import { waitUntil } from './distributed.js';

/**
 * Opens a distributed runtime on `config` (its topics created first), appends 20 turns to the raw topic and
 * consumes them with `group` until every one was seen and the group's offsets are committed (in the
 * stage's transaction): the whole data path of a connection (`over` names it in a failure, e.g. `over TLS`).
 */
export async function roundTrip(
  config: LightmemConfig,
  logger: Logger,
  group: string,
  over: string,
): Promise<void> {
  await adminInit(config, { logger, clock: systemClock });
  const runtime = await DistributedRuntime.open(config, {
    logger,
    clock: systemClock,
    models: { embedder: null },
    env: {},
  });
  try {
    await appendAndConsume(runtime, group, over);
  } finally {
    await runtime.close();
  }
}

async function appendAndConsume(
  { eventLog: log }: DistributedRuntime,
  group: string,
  over: string,
): Promise<void> {
  const turns = Array.from({ length: 20 }, (_, i) =>
    makeTurn(i, { conversationId: `c-${i % 4}`, seq: Math.floor(i / 4), turnId: `t${i}` }),
  );
  await log.append(
    Topics.raw,
    turns.map((turn) => ({ key: conversationKey(turn), value: turn })),
  );
  const seen = new Set<string>();
  const controller = new AbortController();
  const consuming = log.consume(
    { group, topic: Topics.raw, signal: controller.signal, batchSize: 8 },
    async (records) => {
      for (const record of records) seen.add(record.value.turnId);
      return { records: [], state: [] };
    },
  );
  try {
    let committed = 0;
    await waitUntil(
      async () => {
        committed = await log.committedOffset(group, Topics.raw);
        return seen.size === turns.length && committed === turns.length;
      },
      () =>
        `all ${turns.length} turns consumed and committed ${over} (seen ${seen.size}, committed ${committed})`,
      60_000,
    );
  } finally {
    controller.abort();
    await consuming;
  }
}
