import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Topics } from '../../services/core/model/topics.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { ingestEvents, openRuntime } from '../support/embedded.js';
import { collect, repoRoot, tempDir } from '../support/cli.js';
import { startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

const topics = 10;
const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];
/** Memory i of session s: eight shared words (cosine ~0.94 between sessions with the HashingEmbedder). */
const text = (i: number, session: number) =>
  `topic${i} ${words.map((w) => `${w}${i}`).join(' ')}${session === 2 ? ` later${i}` : ''}`;

function spawnChild(dataDir: string, baseUrl: string) {
  return spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'test/support/consolidation-child.ts'), dataDir, baseUrl],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

describe('embedded consolidation survives kill -9 mid-run', () => {
  const dir = tempDir('consolidation-kill');
  let llm: FakeOpenAiServer;

  before(async () => {
    const runtime = await openRuntime(
      dir.path,
      { consolidation: { enabled: false } },
      new HashingEmbedder(64),
    );
    const events = [1, 2].flatMap((session) =>
      Array.from({ length: topics }, (_, i) => ({
        tenantId: 'acme',
        userId: 'u1',
        conversationId: `chat-${session}`,
        sessionId: `s${session}`,
        turnId: `t${session}-${i}`,
        seq: i,
        role: 'user',
        speaker: 'Maya',
        text: text(i, session),
        occurredAt: new Date(Date.UTC(2026, 0, session * 3, 9, i)).toISOString(),
      })),
    );
    await ingestEvents(runtime, events);
    await runtime.close();
    // Slow answers, so the kill lands between decisions: even topics are updated, odd ones ignored.
    llm = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: async (request) => {
        await sleep(120);
        const shown = request.messages.at(-1)?.content ?? '';
        const topic = Number(/topic(\d+)/.exec(shown)?.[1] ?? '1');
        return JSON.stringify(
          topic % 2 === 0
            ? { reason: 'adds a detail', action: 'update', memory: `merged topic${topic}`, by: null }
            : { reason: 'same thing', action: 'ignore', memory: null, by: null },
        );
      },
    });
  });
  after(async () => {
    await llm.close();
    dir.remove();
  });

  it('completes after a restart and decides every target exactly once', async () => {
    const victim = spawnChild(dir.path, llm.baseUrl);
    const victimDone = collect(victim);
    for (let waited = 0; llm.chatRequests().length < 4; waited += 20) {
      if (waited > 60_000) throw new Error(`no LLM calls: ${(await victimDone).stderr}`);
      await sleep(20);
    }
    victim.kill('SIGKILL');
    assert.equal((await victimDone).signal, 'SIGKILL');
    const callsBeforeRestart = llm.chatRequests().length;
    assert.ok(callsBeforeRestart < topics, 'killed mid-run');

    const second = await collect(spawnChild(dir.path, llm.baseUrl));
    assert.equal(second.code, 0, second.stderr);

    const runtime = await openRuntime(
      dir.path,
      { consolidation: { enabled: false } },
      new HashingEmbedder(64),
    );
    try {
      const ops = (await runtime.eventLog.read(Topics.memoryOps, 0, 1_000)).map((record) => record.value);
      const perTarget = new Map<string, number>();
      for (const op of ops) for (const id of op.targetIds) perTarget.set(id, (perTarget.get(id) ?? 0) + 1);
      assert.equal(perTarget.size, topics, 'every target decided');
      assert.deepEqual([...new Set(perTarget.values())], [1], 'and once');
      assert.equal(ops.filter((op) => op.op === 'update').length, topics / 2);
      assert.equal(
        (
          await runtime.store.recordedOps(
            'acme',
            ops.map((op) => op.opId),
          )
        ).size,
        ops.length,
      );
      assert.deepEqual(await runtime.store.pendingConsolidation({ tenantId: 'acme', userId: 'u1' }, 100), []);
      // Answers the killed run had were reused from the ledger: at most the call in flight was paid twice.
      assert.ok(llm.chatRequests().length <= topics + 1, `${llm.chatRequests().length} calls`);
      const merged = await runtime.store.search({
        scope: { tenantId: 'acme', userId: 'u1' },
        text: 'merged topic0',
        limit: 3,
      });
      assert.equal(merged[0]?.memory.text, 'merged topic0');
      assert.equal(merged[0]?.memory.sourceTurnIds.length, 2);
    } finally {
      await runtime.close();
    }
  });
});
