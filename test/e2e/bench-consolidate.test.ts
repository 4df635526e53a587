import { after, before, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { recallBenchCommand } from '../../services/cli/bench-recall-command.js';
import { InvalidInputError } from '../../services/core/errors.js';
import { HashingEmbedder } from '../support/hashing-embedder.js';
import { tempDir } from '../support/cli.js';
import { factPerLine, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

interface Counts {
  update: number;
  supersede: number;
  merge: number;
  ignore: number;
}

interface Consolidation {
  mode: string;
  policy: string;
  changesMemories: boolean;
  counts: Counts;
  targets: number;
  llmCalls: number;
  llmPromptTokens: number;
  wallSeconds: { total: number; mean: number; p50: number };
  memoriesBefore: number;
  memoriesAfter: number;
  recallBefore: Record<string, number>;
  recallAfter: Record<string, number>;
  byCase: Record<string, { counts: Counts; calls: number; promptTokens: number; seconds: number }>;
}

interface Summary {
  cases: number;
  llmCalls: number;
  overall: Record<string, number>;
  memories: number;
  consolidation?: Consolidation;
  out: string;
}

const pixel = 'I adopted a greyhound named Pixel last spring and she loves running on the beach.';

/** A LoCoMo-shaped sample: Caroline says the same thing in three sessions, among other turns. */
function sample(id: string, other: string) {
  const session = (n: number, turns: [string, string][]) =>
    turns.map(([speaker, text], i) => ({ speaker, dia_id: `D${n}:${i + 1}`, text }));
  return {
    sample_id: id,
    conversation: {
      speaker_a: 'Caroline',
      speaker_b: 'Melanie',
      session_1_date_time: '1:56 pm on 8 May, 2023',
      session_1: session(1, [
        ['Caroline', pixel],
        ['Melanie', `That is lovely. ${other}`],
        ['Caroline', 'My sister works as a nurse in Porto and visits twice a year.'],
      ]),
      session_2_date_time: '10:12 am on 20 June, 2023',
      session_2: session(2, [
        ['Caroline', pixel],
        ['Melanie', 'We booked a cabin in the Alps for February with the kids.'],
      ]),
      session_3_date_time: '4:30 pm on 2 August, 2023',
      session_3: session(3, [
        ['Melanie', 'I finally finished the watercolor of the lake at sunrise.'],
        ['Caroline', pixel],
      ]),
    },
    qa: [
      {
        question: 'What is the name of the greyhound Caroline adopted?',
        answer: 'Pixel',
        evidence: ['D1:1'],
        category: 4,
      },
      {
        question: 'Where does Caroline sister work as a nurse?',
        answer: 'Porto',
        evidence: ['D1:3'],
        category: 4,
      },
      { question: 'Where did Melanie book a cabin?', answer: 'the Alps', evidence: ['D2:2'], category: 4 },
    ],
  };
}

/** The bench in this process, over the hashing embedder (no model); the last console line, parsed. */
async function bench(
  data: string,
  out: string,
  extra: readonly string[],
  env: Record<string, string> = {},
): Promise<Summary> {
  const lines: string[] = [];
  const log = mock.method(console, 'log', (...args: unknown[]) => lines.push(args.map(String).join(' ')));
  const saved = Object.fromEntries(Object.keys(env).map((key) => [key, process.env[key]]));
  Object.assign(process.env, env);
  try {
    const code = await recallBenchCommand(
      'locomo',
      ['--data', data, '--out', out, '--search-limit', '50', '--json', ...extra],
      { models: { embedder: new HashingEmbedder(64) } },
    );
    assert.equal(code, 0);
  } finally {
    log.mock.restore();
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) Reflect.deleteProperty(process.env, key);
      else process.env[key] = value;
    }
  }
  return JSON.parse(lines.at(-1) ?? '{}') as Summary;
}

describe('lightmem bench locomo --consolidate', () => {
  const dir = tempDir('bench-consolidate');
  const data = join(dir.path, 'locomo-tiny.json');
  let off: Summary;
  let dry: Summary;
  let live: Summary;
  let server: FakeOpenAiServer;
  const isUpdateRequest = (content: string): boolean => content.startsWith('Target:\n');

  before(async () => {
    writeFileSync(
      data,
      JSON.stringify([
        sample('conv-a', 'The kids loved the pottery class.'),
        sample('conv-b', 'Work was busy.'),
      ]),
    );
    off = await bench(data, join(dir.path, 'off'), ['--consolidate']);
    dry = await bench(data, join(dir.path, 'dry'), ['--consolidate', '--llm', 'dry-run']);
    // Live: the scripted server extracts one fact per turn and updates the greyhound memory.
    server = await startFakeOpenAiServer({
      models: ['scripted'],
      responder: (request) => {
        const content = request.messages.at(-1)?.content ?? '';
        if (!isUpdateRequest(content)) return factPerLine(content);
        const target = /^T .*$/m.exec(content)?.[0] ?? '';
        return JSON.stringify(
          /greyhound/.test(target)
            ? {
                reason: 'the newer memories repeat it; one memory says it',
                action: 'update',
                memory:
                  'Caroline adopted a greyhound named Pixel last spring; she loves running on the beach.',
                by: null,
              }
            : { reason: 'unrelated', action: 'ignore', memory: null, by: null },
        );
      },
    });
    live = await bench(data, join(dir.path, 'live'), ['--consolidate', '--llm', 'live'], {
      LIGHTMEM_LLM_BASE_URL: server.baseUrl,
      LIGHTMEM_LLM_MODEL: 'scripted',
    });
  });
  after(async () => {
    await server.close();
    dir.remove();
  });

  it('--llm off: the repeated turns are merged into one version per case, and recall after is reported', () => {
    const c = off.consolidation;
    assert.ok(c !== undefined, 'a consolidation object in the --json line');
    assert.equal(c.mode, 'off');
    assert.match(c.policy, /^near-duplicate@0\.97$/);
    assert.equal(c.counts.merge, 2, 'one merge of the three copies per case');
    assert.equal(c.counts.update + c.counts.supersede + c.counts.ignore, 0);
    assert.equal(c.llmCalls, 0);
    assert.equal(c.memoriesBefore, off.memories);
    assert.equal(c.memoriesAfter, c.memoriesBefore - 4, 'three copies become one, in each case');
    for (const caseId of ['conv-a', 'conv-b']) {
      assert.equal(c.byCase[caseId]?.counts.merge, 1, caseId);
      assert.ok((c.byCase[caseId]?.seconds ?? -1) >= 0);
    }
    assert.ok(c.wallSeconds.total >= c.wallSeconds.p50 && c.wallSeconds.p50 > 0);
    assert.deepEqual(c.recallBefore, off.overall, 'before: the figures the run reports as today');
    for (const key of ['R@5', 'R@10', 'R@B500', 'R@B1000', 'R@B2000']) {
      assert.equal(typeof c.recallAfter[key], 'number', key);
      assert.ok((c.recallAfter[key] ?? 0) >= (c.recallBefore[key] ?? 1), `${key} must not drop`);
    }
    // The merged version cites the turns of all three copies.
    const after = readFileSync(join(dir.path, 'off', 'retrieval-after.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { question_id: string; retrieved: { sources: string[] }[] });
    const pixelQuestion = after.find((row) => row.question_id === 'conv-a#0');
    assert.deepEqual(pixelQuestion?.retrieved[0]?.sources.sort(), ['D1:1', 'D2:1', 'D3:2']);
    const report = JSON.parse(readFileSync(off.out, 'utf8')) as { consolidation: { counts: Counts } };
    assert.equal(report.consolidation.counts.merge, 2);
    const markdown = readFileSync(join(dir.path, 'off', 'report.md'), 'utf8');
    assert.match(markdown, /## Sleep-time consolidation/);
    assert.match(markdown, /overall after/);
  });

  it('--llm dry-run: counts the LLM policy requests and their tokens, sends nothing, changes nothing', () => {
    const c = dry.consolidation;
    assert.ok(c !== undefined);
    assert.equal(c.mode, 'dry-run');
    assert.match(c.policy, /^dry-run:llm:/);
    assert.equal(c.changesMemories, false);
    assert.ok(c.llmCalls >= 4, `the first two copies of each case are targets: ${c.llmCalls} calls`);
    assert.equal(c.counts.ignore, c.llmCalls, 'one call per target, decided ignore');
    assert.equal(c.counts.update + c.counts.supersede + c.counts.merge, 0);
    assert.ok(c.llmPromptTokens > c.llmCalls * 300, 'the update prompt and the case, per call');
    assert.equal(c.memoriesAfter, c.memoriesBefore);
    assert.deepEqual(c.recallAfter, c.recallBefore, 'nothing changed');
    const perCase = Object.values(c.byCase);
    assert.equal(
      perCase.reduce((sum, row) => sum + row.calls, 0),
      c.llmCalls,
    );
    const requests = readFileSync(join(dir.path, 'dry', 'consolidation-requests.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            userId: string;
            promptTokens: number;
            messages: { role: string; content: string }[];
          },
      );
    assert.equal(requests.length, c.llmCalls, 'every request that would be sent is written out');
    assert.equal(
      requests.reduce((sum, r) => sum + r.promptTokens, 0),
      c.llmPromptTokens,
    );
    assert.equal(requests[0]?.messages[0]?.role, 'system');
    assert.match(
      requests[0]?.messages[1]?.content ?? '',
      /^Target:\nT \[2023-05-08T13:56:00Z, Mon\] Caroline: /,
    );
  });

  it('--llm live: the LLM policy decides on the endpoint; its calls are counted apart from the extraction', () => {
    const c = live.consolidation;
    assert.ok(c !== undefined);
    assert.equal(c.mode, 'live');
    assert.match(c.policy, /^llm:scripted@/);
    const chats = server.chatRequests().map((request) => request.messages.at(-1)?.content ?? '');
    const updates = chats.filter(isUpdateRequest).length;
    assert.ok(updates >= 2, `update requests: ${updates}`);
    assert.equal(c.llmCalls, updates, 'the update phase: the ledger calls made while consolidating');
    assert.equal(live.llmCalls, chats.length - updates, 'the extraction: the calls made before');
    assert.ok(c.llmPromptTokens > 0);
    assert.ok(
      c.counts.update >= 2,
      `one update of the greyhound memory per case: ${JSON.stringify(c.counts)}`,
    );
    assert.equal(c.memoriesAfter, c.memoriesBefore, 'an update replaces its target with a new version');
    const after = readFileSync(join(dir.path, 'live', 'retrieval-after.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { question_id: string; retrieved: { text: string }[] });
    const pixelQuestion = after.find((row) => row.question_id === 'conv-a#0');
    assert.match(pixelQuestion?.retrieved[0]?.text ?? '', /Pixel last spring; she loves/);
  });

  it('refuses --consolidate with a raw baseline, naming the flag', async () => {
    await assert.rejects(
      recallBenchCommand('locomo', [
        '--data',
        data,
        '--out',
        join(dir.path, 'refused'),
        '--baseline',
        'bm25-raw',
        '--consolidate',
      ]),
      (error: unknown) => error instanceof InvalidInputError && /--consolidate/.test(error.message),
    );
  });
});
