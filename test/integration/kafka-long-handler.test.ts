import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AssignerProtocol, type Admin } from 'kafkajs';
import { compressedOf } from '../contract/event-log.contract.js';
import { makeTurn } from '../support/event-fixtures.js';
import { Topics, conversationKey } from '../../services/core/model/topics.js';
import type { BatchHandler } from '../../services/core/ports/event-log.js';
import { readableRecords } from './support/sealed-records.js';
import { kafkaTopic, type TopicLayout } from '../../services/adapters/kafka/kafka-topics.js';
import { deleteTopics, freshLayout, openKafkaLog, testKafka } from './support/servers.js';
import { waitUntil } from './support/distributed.js';

/** The broker's minimum (group.min.session.timeout.ms): the shortest session a member may ask for. */
const sessionTimeoutMs = 6_000;
/** The first batch's handler takes this long: well over the session timeout. */
const slowHandlerMs = 15_000;
const recordCount = 20;
const group = 'stage';

type Member = 'a' | 'b';

/** The group as the coordinator sees it at one instant. */
interface GroupSnapshot {
  readonly atMs: number;
  readonly state: string;
  readonly members: number;
  /** The member id that owns partition 0 of the input topic (null: none, e.g. while rebalancing). */
  readonly owner: string | null;
}

async function snapshot(admin: Admin, layout: TopicLayout, started: number): Promise<GroupSnapshot> {
  const { groups } = await admin.describeGroups([`${layout.prefix}${group}`]);
  const [described] = groups;
  const input = kafkaTopic(layout, Topics.raw);
  const owner =
    described?.members.find((member) =>
      (AssignerProtocol.MemberAssignment.decode(member.memberAssignment)?.assignment[input] ?? []).includes(
        0,
      ),
    )?.memberId ?? null;
  return {
    atMs: Date.now() - started,
    state: described?.state ?? 'Unknown',
    members: described?.members.length ?? 0,
    owner,
  };
}

interface Outcome {
  /** The member whose first batch took `slowHandlerMs`, and the turn ids of that batch. */
  readonly slow: { member: Member; turnIds: readonly string[] };
  /** The member id that owned the partition when the slow batch started. */
  readonly ownerAtStart: string;
  /** The group every 250 ms while the slow batch ran. */
  readonly during: readonly GroupSnapshot[];
  /** Every handling of every turn id, by member, in order. */
  readonly handled: ReadonlyMap<string, readonly Member[]>;
  /** How many times each turn id is in the output topic. */
  readonly outputCounts: ReadonlyMap<string, number>;
  readonly committed: number;
}

/**
 * Two members of one stage group on a one-partition topic (so one owns it and the other waits); the owner's
 * first batch takes 15 s, more than twice the 6 s session timeout, while the batch policy heartbeats every
 * `heartbeatMs`. Returns what each member handled, how the group looked during the slow batch, and what was
 * committed.
 */
async function longBatch(heartbeatMs: number, label: string): Promise<Outcome> {
  const layout = freshLayout(label, 1);
  const options = { sessionTimeoutMs, heartbeatMs };
  const a = await openKafkaLog(layout, { instanceId: 'a', ...options });
  const b = await openKafkaLog(layout, { instanceId: 'b', ...options });
  const kafka = testKafka('lightmem-test-reader');
  const admin = kafka.admin();
  await admin.connect();
  const controller = new AbortController();
  const running: Promise<void>[] = [];
  try {
    const events = Array.from({ length: recordCount }, (_, i) =>
      makeTurn(i, { conversationId: 'conv-long', seq: i, turnId: `turn-${i}` }),
    );
    const handled = new Map<string, Member[]>();
    let slow: { member: Member; turnIds: string[]; done: boolean } | null = null;
    const handlerOf =
      (member: Member): BatchHandler<typeof Topics.raw> =>
      async (records) => {
        const turnIds = records.map((r) => r.value.turnId);
        for (const id of turnIds) handled.set(id, [...(handled.get(id) ?? []), member]);
        if (slow === null) {
          const mine = { member, turnIds, done: false };
          slow = mine;
          await sleep(slowHandlerMs);
          mine.done = true;
        }
        return {
          records: records.map((r) => ({
            topic: Topics.compressed,
            key: r.key,
            value: compressedOf(r.value),
          })),
          state: [],
        };
      };
    const consume = { group, topic: Topics.raw, signal: controller.signal, batchSize: 256 };
    running.push(a.consume(consume, handlerOf('a')), b.consume(consume, handlerOf('b')));

    // Both members in the group, one of them owning the partition, before anything is written.
    let seen: GroupSnapshot | null = null;
    await waitUntil(
      async () => {
        seen = await snapshot(admin, layout, Date.now());
        return seen.state === 'Stable' && seen.members === 2 && seen.owner !== null;
      },
      () => `both members to join, one owning the partition (last seen: ${JSON.stringify(seen)})`,
      60_000,
    );
    await a.append(
      Topics.raw,
      events.map((event) => ({ key: conversationKey(event), value: event })),
    );
    await waitUntil(async () => slow !== null, 'the first batch to start', 30_000);
    const started = Date.now();
    const ownerAtStart = (await snapshot(admin, layout, started)).owner;
    assert.ok(ownerAtStart !== null, 'a member owns the partition when the slow batch starts');
    const during: GroupSnapshot[] = [];
    const current = (): { member: Member; turnIds: string[]; done: boolean } => {
      assert.ok(slow !== null);
      return slow;
    };
    while (!current().done) {
      during.push(await snapshot(admin, layout, started));
      await sleep(250);
    }
    await waitUntil(
      async () => (await a.committedOffset(group, Topics.raw)) >= events.length,
      () => `all ${events.length} records to be committed (handled: ${JSON.stringify([...handled])})`,
      60_000,
    );
    // A member that lost the partition mid-batch commits when its handler returns: let that land too.
    await sleep(2_000);
    const committed = await a.committedOffset(group, Topics.raw);

    const outputCounts = new Map<string, number>();
    // Values are sealed with their user's key: opened as a new reader would.
    for (const record of await readableRecords(layout, kafkaTopic(layout, Topics.compressed))) {
      const turn = /turn-\d+/.exec(record.value?.toString('latin1') ?? '')?.[0] ?? '?';
      outputCounts.set(turn, (outputCounts.get(turn) ?? 0) + 1);
    }
    const { member, turnIds } = current();
    return { slow: { member, turnIds }, ownerAtStart, during, handled, outputCounts, committed };
  } finally {
    controller.abort();
    await Promise.all(running);
    await admin.disconnect();
    await a.close();
    await b.close();
    await deleteTopics(layout);
  }
}

function describeOutcome(outcome: Outcome): string {
  const timeline = outcome.during
    .filter((s, i, all) => i === 0 || s.state !== all[i - 1]?.state || s.owner !== all[i - 1]?.owner)
    .map(
      (s) =>
        `${(s.atMs / 1000).toFixed(1)} s ${s.state} ${s.members} members, owner ${s.owner === outcome.ownerAtStart ? 'unchanged' : (s.owner ?? 'none')}`,
    );
  const redone = outcome.slow.turnIds.filter((id) => (outcome.handled.get(id)?.length ?? 0) > 1).length;
  const duplicated = [...outcome.outputCounts.values()].filter((n) => n > 1).length;
  return (
    `slow batch of ${outcome.slow.turnIds.length} records on member ${outcome.slow.member}; ` +
    `${redone} of them handled again; ${duplicated} turns more than once in the output; committed ${outcome.committed}; ` +
    `group during the batch: ${timeline.join(' | ')}`
  );
}

describe('KafkaEventLog: a batch that takes longer than the session timeout', () => {
  it('keeps its partition while the batch policy heartbeats: the batch is handled and committed once', async () => {
    const outcome = await longBatch(1_000, 'long-handler');
    console.log(`heartbeat every 1 s: ${describeOutcome(outcome)}`);
    assert.ok(outcome.during.length > 0);
    const moved = outcome.during.filter((s) => s.state !== 'Stable' || s.owner !== outcome.ownerAtStart);
    assert.deepEqual(moved, [], 'the group never rebalanced away from the slow member during its batch');
    for (const id of outcome.slow.turnIds) {
      assert.deepEqual(outcome.handled.get(id), [outcome.slow.member], `${id} handled once, by its owner`);
    }
    assert.equal(outcome.handled.size, recordCount);
    assert.ok(
      [...outcome.handled.values()].every((members) => members.length === 1),
      'no record handled twice',
    );
    assert.equal(outcome.outputCounts.size, recordCount);
    assert.ok(
      [...outcome.outputCounts.values()].every((n) => n === 1),
      'every record in the output once',
    );
    assert.equal(outcome.committed, recordCount, 'every offset committed');
  });

  it('control: without a heartbeat during the batch, the session expires and the other member redoes the batch', async () => {
    const outcome = await longBatch(10 * slowHandlerMs, 'long-handler-control');
    console.log(`no heartbeat during the batch: ${describeOutcome(outcome)}`);
    const moved = outcome.during.filter((s) => s.state !== 'Stable' || s.owner !== outcome.ownerAtStart);
    assert.ok(moved.length > 0, 'the group rebalanced the partition away from the slow member');
    const other: Member = outcome.slow.member === 'a' ? 'b' : 'a';
    assert.ok(
      outcome.slow.turnIds.some((id) => outcome.handled.get(id)?.includes(other) === true),
      `the other member (${other}) handled the slow batch's records again`,
    );
  });
});
