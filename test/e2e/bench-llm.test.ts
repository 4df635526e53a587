import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { locomoFile, tempDir, lastJsonLine } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';
import { factPerLine, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';
import { SqliteLlmLedger } from '../../services/adapters/sqlite/sqlite-llm-ledger.js';

interface Summary {
  memories: number;
  llmMode: string;
  llmCalls: number;
  llmPromptTokens: number;
  llmCompletionTokens: number;
  llmPerCase: Record<string, { calls: number; promptTokens: number; completionTokens: number }>;
  out: string;
}

// First LoCoMo sample, lexical only (the test CLI runs with LIGHTMEM_EMBEDDER=none): seconds each.
describe('lightmem bench locomo --llm', () => {
  const dir = tempDir('bench-llm');
  let server: FakeOpenAiServer;
  let dry: Summary;
  let live: Summary;
  let spanning: Summary;

  before(async () => {
    server = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: (request) => factPerLine(request.messages.at(-1)?.content ?? ''),
    });
    const bench = async (name: string, extra: string[], env: Record<string, string> = {}): Promise<Summary> =>
      lastJsonLine(
        await runCliInProcess(
          [
            'bench',
            'locomo',
            '--data',
            locomoFile,
            '--out',
            join(dir.path, name),
            '--limit',
            '1',
            // Only how memories are made is checked here, not recall: the fewest memories per question.
            '--search-limit',
            '50',
            '--json',
            ...extra,
          ],
          env,
        ),
      ) as Summary;
    dry = await bench('dry', ['--llm', 'dry-run']);
    const config = join(dir.path, 'spanning.json');
    writeFileSync(
      config,
      JSON.stringify({ summarizer: { flushAtSessionEnd: false, thresholdTokens: 2048 } }),
    );
    spanning = await bench('spanning', ['--llm', 'dry-run', '--config', config]);
    live = await bench('live', ['--llm', 'live'], {
      LIGHTMEM_LLM_BASE_URL: server.baseUrl,
      LIGHTMEM_LLM_MODEL: 'scripted',
    });
  });
  after(async () => {
    await server.close();
    dir.remove();
  });

  it('dry-run: counts every extraction request with o200k and sends nothing; the memories are the extractive ones', () => {
    assert.equal(dry.llmMode, 'dry-run');
    assert.ok(dry.llmCalls >= 10, `one call per STM batch: ${dry.llmCalls}`);
    assert.ok(dry.llmPromptTokens > dry.llmCalls * 500, 'the system prompt and the batch, per call');
    assert.equal(dry.llmCompletionTokens, 0);
    assert.deepEqual(dry.llmPerCase['conv-26'], {
      calls: dry.llmCalls,
      promptTokens: dry.llmPromptTokens,
      completionTokens: 0,
    });
    // A dry run changes no memory: the extractive ones, a memory per turn and one per chunk of a long turn.
    assert.ok(dry.memories > 419, `${dry.memories} memories for 419 turns`);
    const report = JSON.parse(readFileSync(dry.out, 'utf8')) as { files: { llmRequests: string } };
    const requests = readFileSync(report.files.llmRequests, 'utf8')
      .trim()
      .split('\n')
      .map(
        (line) => JSON.parse(line) as { promptTokens: number; messages: { role: string; content: string }[] },
      );
    assert.equal(requests.length, dry.llmCalls, 'every request that would be sent is written out');
    assert.equal(requests[0]?.messages[0]?.role, 'system');
    assert.match(
      requests[0]?.messages[1]?.content ?? '',
      /^--- Topic 1 ---\n\[2023-05-08T13:56:00Z, Mon\] 1\.Caroline: /,
    );
  });

  it('batches that span sessions (flushAtSessionEnd false) make fewer, fuller calls, and the end of the input extracts the rest', () => {
    // conv-26 has 19 sessions: flushing at each session end takes at least 19 calls.
    assert.ok(spanning.llmCalls < 19, `${spanning.llmCalls} calls for 19 sessions`);
    assert.ok(spanning.llmCalls > 0);
    assert.equal(spanning.memories, dry.memories, 'every turn still becomes a memory');
  });

  it('live: the LLM extractor on the endpoint; the ledger has the calls and the tokens it reported', async () => {
    const chats = server.chatRequests();
    assert.equal(live.llmMode, 'live');
    assert.equal(live.llmCalls, chats.length);
    assert.equal(live.llmCalls, dry.llmCalls, 'the dry run counted exactly the calls sent');
    assert.ok(live.llmPromptTokens > 0 && live.llmCompletionTokens > 0);
    assert.equal(live.memories, 419, 'one fact per memorized turn, as scripted');
    const report = JSON.parse(readFileSync(live.out, 'utf8')) as { files: { dataDir: string } };
    const ledger = SqliteLlmLedger.open(join(report.files.dataDir, 'ledger.db'));
    try {
      const [totals] = await ledger.totals();
      assert.equal(totals?.model, 'scripted');
      assert.equal(totals?.calls, chats.length);
      assert.equal(totals?.promptTokens, live.llmPromptTokens);
    } finally {
      await ledger.close();
    }
  });
});
