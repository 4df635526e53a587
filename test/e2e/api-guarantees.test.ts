import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Topics } from '../../services/core/model/topics.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { openRuntime } from '../support/embedded.js';
import { tempDir } from '../support/cli.js';
import { serveInProcess } from '../support/in-process-api.js';
import type { ApiClient } from '../support/api-client.js';

/** What the API promises about accepted turns: stored, closed, searchable when it says so, bounded. */
describe('HTTP API guarantees (embedded, in process)', () => {
  const dir = tempDir('api-guarantees');
  const deadLetterCap = 256 * 1024;
  let runtime: EmbeddedRuntime;
  let close: () => Promise<void> = async () => undefined;
  let acme: ApiClient;
  let main: ApiClient;

  before(async () => {
    runtime = await openRuntime(dir.path, {
      deadLetters: { maxBytes: deadLetterCap },
      sqlite: { busyTimeoutMs: 50 },
    });
    const api = await serveInProcess(runtime);
    acme = await api.client('acme');
    main = await api.client('default');
    close = async () => {
      await api.close();
      await runtime.close();
    };
  });
  after(async () => {
    await close();
    dir.remove();
  });

  const post = (path: string, body: unknown) => main.post(path, body);
  const search = async (tenantId: string, userId: string, query: string): Promise<string[]> => {
    const { json } = await (tenantId === 'acme' ? acme : main).post('/v1/search', {
      userId,
      query,
      limit: 20,
    });
    return (json['results'] as { text: string }[]).map((result) => result.text);
  };
  const turn = (fields: Record<string, unknown>) => ({
    role: 'customer',
    occurredAt: '2024-06-01T10:00:00+02:00',
    ...fields,
  });

  it('stores two turns whose ids differ only in where a "/" falls (no key collision)', async () => {
    const events = [
      turn({
        userId: 'x/c',
        conversationId: 'd',
        turnId: '1',
        text: 'My parcel number is ZX-41.',
      }),
      turn({
        userId: 'x',
        conversationId: 'c/d',
        turnId: '1',
        text: 'I prefer delivery on Fridays.',
      }),
    ];
    const answer = await acme.post('/v1/events?wait=true', { events, endSession: true });
    assert.equal(answer.status, 202, JSON.stringify(answer.json));
    assert.deepEqual(
      {
        accepted: answer.json['accepted'],
        duplicates: answer.json['duplicates'],
        processed: answer.json['processed'],
      },
      { accepted: 2, duplicates: 0, processed: true },
    );
    assert.deepEqual(await search('acme', 'x/c', 'parcel number'), ['My parcel number is ZX-41.']);
    assert.deepEqual(await search('acme', 'x', 'delivery Fridays'), ['I prefer delivery on Fridays.']);
  });

  it('a session reopened with new turns is closed again by its second end: the new turns are searchable when it returns', async () => {
    const first = await post('/v1/events?wait=true', {
      events: [
        turn({
          userId: 'dana',
          conversationId: 'call-1',
          sessionId: 's1',
          turnId: '1',
          text: 'My order A-1001 arrived broken.',
        }),
      ],
      endSession: true,
    });
    assert.equal(first.json['processed'], true);
    const reopened = await post('/v1/events?wait=true', {
      events: [
        turn({
          userId: 'dana',
          conversationId: 'call-1',
          sessionId: 's1',
          turnId: '2',
          text: 'Please send the replacement lamp to Lyon.',
        }),
      ],
      endSession: true,
    });
    assert.deepEqual(
      {
        accepted: reopened.json['accepted'],
        sessionEnds: reopened.json['sessionEnds'],
        processed: reopened.json['processed'],
      },
      { accepted: 1, sessionEnds: 1, processed: true },
    );
    assert.ok((await search('default', 'dana', 'replacement lamp Lyon')).some((text) => /Lyon/.test(text)));
  });

  it('a turn whose id looks like a session-end marker does not stop a later session end', async () => {
    const answer = await post('/v1/events?wait=true', {
      events: [
        turn({
          userId: 'eve',
          conversationId: 'chat-9',
          sessionId: 's9',
          turnId: 'session-end:s9',
          text: 'The coupon code SPRING24 failed.',
        }),
        turn({
          userId: 'eve',
          conversationId: 'chat-9',
          sessionId: 's9',
          turnId: 'flush-after:session-end:s9',
          text: 'Agent promised a refund by Monday.',
        }),
      ],
      endSession: true,
    });
    assert.deepEqual(
      { accepted: answer.json['accepted'], processed: answer.json['processed'] },
      { accepted: 2, processed: true },
    );
    assert.equal((await search('default', 'eve', 'coupon refund Monday')).length, 2);
  });

  it('wait=true on an open session says how many turns still wait in a buffer (processed: false)', async () => {
    const open = await post('/v1/events?wait=true', {
      events: [
        turn({ userId: 'finn', conversationId: 'call-2', turnId: '1', text: 'I moved to Porto last week.' }),
        turn({
          userId: 'finn',
          conversationId: 'call-2',
          turnId: '2',
          role: 'agent',
          text: 'Noted, I updated the address.',
        }),
      ],
    });
    assert.deepEqual(
      { processed: open.json['processed'], buffered: open.json['buffered'] },
      { processed: false, buffered: 2 },
    );
    const ended = await post('/v1/events?wait=true', {
      events: [turn({ userId: 'finn', conversationId: 'call-2', turnId: '3', text: 'Thanks, bye.' })],
      endSession: true,
    });
    assert.deepEqual(
      { processed: ended.json['processed'], buffered: ended.json['buffered'] },
      { processed: true, buffered: 0 },
    );
    assert.ok((await search('default', 'finn', 'Porto')).length > 0);
  });

  it('answers 503 with Retry-After while another process holds the log, and takes the same post afterwards', async () => {
    const other = new Database(join(dir.path, 'log.db'));
    const events = [
      turn({ userId: 'gus', conversationId: 'chat-3', turnId: '1', text: 'Cancel my subscription.' }),
    ];
    try {
      other.exec('BEGIN IMMEDIATE');
      const busy = await post('/v1/events', { events });
      other.exec('COMMIT');
      assert.equal(busy.status, 503, JSON.stringify(busy.json));
      assert.equal(busy.headers.get('retry-after'), '1');
      assert.deepEqual(busy.json['error'], {
        code: 'storage_unavailable',
        message: 'appending to lightmem.turns.raw: the database is locked by another process; try again',
        field: null,
        retryable: true,
      });
    } finally {
      other.close();
    }
    const retried = await post('/v1/events', { events });
    assert.equal(retried.status, 202);
    assert.equal(retried.json['accepted'], 1);
  });

  it('a flood of invalid events stays within the dead-letter cap', async () => {
    const junk = 'x'.repeat(8 * 1024);
    let rejected = 0;
    for (let request = 0; request < 20; request++) {
      const events = Array.from({ length: 100 }, (_, i) =>
        turn({
          userId: 'mallory',
          conversationId: `c${request}`,
          turnId: String(i),
          role: 'robot',
          text: junk,
        }),
      );
      const answer = await post('/v1/events', { events });
      assert.equal(answer.status, 202);
      rejected += (answer.json['rejected'] as unknown[]).length;
    }
    assert.equal(rejected, 2000); // ~16 MB of bad input sent
    const usage = await runtime.log.usage(Topics.deadLetters);
    assert.ok(usage.bytes <= deadLetterCap, `${usage.bytes} bytes of dead letters kept`);
    assert.ok(usage.pruned > 0);
    const onDisk = ['log.db', 'log.db-wal'].reduce((sum, file) => {
      try {
        return sum + statSync(join(dir.path, file)).size;
      } catch {
        return sum;
      }
    }, 0);
    // Bounded: the cap plus the pages SQLite keeps (the owner columns and index that erasure needs add ~10%).
    assert.ok(onDisk < 8 * 1024 * 1024, `log.db and its WAL hold ${onDisk} bytes`);
    // What is kept says what was wrong: reason, field and a bounded excerpt.
    const [last] = await runtime.log.read(
      Topics.deadLetters,
      (await runtime.log.endOffset(Topics.deadLetters)) - 1,
      1,
    );
    assert.equal(last?.value.field, 'events.99.role');
    assert.ok((last?.value.payload.length ?? Infinity) < 1200);
  });
});
