import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { summarizerNudgeJob } from '../../workflows/summarizer-nudges.js';
import { InMemoryState } from '../../services/stages/in-memory-state.js';
import { conversationStateKey } from '../../services/stages/state-keys.js';
import { stmStatePrefix } from '../../services/stages/summarizer/summarizer-stage.js';
import type { StmBufferState } from '../../services/stages/summarizer/stm-buffer.js';
import type { ConversationEvent } from '../../services/core/model/generated.js';
import type { AppendRecord, EventLog } from '../../services/core/ports/event-log.js';
import type { Topics } from '../../services/core/model/topics.js';

const T0 = 1_800_000_000_000;
const scope = { tenantId: 't', userId: 'u', conversationId: 'c' };
const buffer: StmBufferState = {
  tokens: 5,
  lastReceivedAt: T0,
  segments: [
    {
      segmentId: 's1',
      ...scope,
      agentId: null,
      sessionId: 'sess-1',
      turns: [],
      boundary: { reason: 'session_end', similarity: null, threshold: null, note: '' },
      endOfSession: true,
      segmenterVersion: 'v',
      scorerVersion: 'v',
    },
  ],
  deferred: [],
};

function fakeLog(state: InMemoryState): { log: EventLog; appended: ConversationEvent[] } {
  const appended: ConversationEvent[] = [];
  const log = {
    stateOf: () => state,
    append: (_topic: string, batch: AppendRecord<typeof Topics.raw>[]) => {
      appended.push(...batch.map((r) => r.value));
      return Promise.resolve({ appended: batch.length, duplicates: 0, duplicateIndexes: [] });
    },
  } as unknown as EventLog;
  return { log, appended };
}

describe('the summarizer-nudges job', () => {
  it('with batches that span sessions, a buffer quiet for idleBufferMs gets one flush-stm nudge', async () => {
    const state = new InMemoryState().apply([
      { key: conversationStateKey(stmStatePrefix, scope), value: JSON.stringify(buffer) },
    ]);
    const { log, appended } = fakeLog(state);
    const job = summarizerNudgeJob(log, { intervalMs: 1_000, idleBufferMs: 60_000 });
    const signal = new AbortController().signal;
    await job.run({ now: T0 + 59_000, signal });
    assert.equal(appended.length, 0, 'not quiet long enough');
    await job.run({ now: T0 + 61_000, signal });
    assert.deepEqual(
      appended.map((e) => [e.kind, e.metadata['reason'], e.turnId, e.sessionId]),
      [['flush', 'flush-stm', `flush-stm@${T0}`, 'sess-1']],
    );
  });

  it('with session-end flushes (the default) it never flushes a buffer', async () => {
    const state = new InMemoryState().apply([
      { key: conversationStateKey(stmStatePrefix, scope), value: JSON.stringify(buffer) },
    ]);
    const { log, appended } = fakeLog(state);
    await summarizerNudgeJob(log, { intervalMs: 1_000, idleBufferMs: null }).run({
      now: T0 + 3_600_000,
      signal: new AbortController().signal,
    });
    assert.equal(appended.length, 0);
  });
});
