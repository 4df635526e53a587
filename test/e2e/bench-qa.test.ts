import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedData, tempDir } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';
import { startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

const oracle = join(sharedData, 'longmemeval-oracle-dev.json');

interface QaSummary {
  dryRun: boolean;
  accuracy: number;
  correct: number;
  total: number;
  calls: number;
  plannedCalls: number;
  answerModel: string;
  judgeModel: string;
  byCategory: Record<string, number>;
}

function lastJson(stdout: string): { qa: QaSummary } {
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { qa: QaSummary };
}

// The first four oracle questions: 001be529 (answer "over a year"), two _abs, 25e5aa4f.
describe('lightmem bench longmemeval --qa against a local OpenAI-compatible server', () => {
  const dir = tempDir('bench-qa');
  const config = join(dir.path, 'config.json');
  let server: FakeOpenAiServer;

  before(async () => {
    writeFileSync(config, JSON.stringify({ llm: { model: 'answerer', judgeModel: 'judge' } }));
    server = await startFakeOpenAiServer({
      responder: (request) => {
        const prompt = request.messages.map((m) => m.content).join('\n');
        if (request.model === 'answerer') return 'It took over a year.';
        // The judge: right when the reference answer is in the model's response.
        const reference = /over a year/.test(prompt.split('It took over a year.')[0] ?? '');
        return reference ? 'yes' : 'no';
      },
    });
  });
  after(async () => {
    await server.close();
    dir.remove();
  });

  it('answers every question from its memories, grades it, and reports accuracy beside recall', async () => {
    const out = join(dir.path, 'out');
    const result = await runCliInProcess(
      [
        'bench',
        'longmemeval',
        '--data',
        oracle,
        '--out',
        out,
        '--limit',
        '4',
        '--qa',
        '--config',
        config,
        '--json',
      ],
      { LIGHTMEM_LLM_BASE_URL: server.baseUrl, OPENAI_API_KEY: 'sk-test' },
    );
    assert.equal(result.code, 0, result.stderr);
    const { qa } = lastJson(result.stdout);
    assert.equal(qa.dryRun, false);
    assert.equal(qa.answerModel, 'answerer');
    assert.equal(qa.judgeModel, 'judge');
    assert.equal(qa.total, 4, 'LongMemEval grades every question, abstentions included');
    assert.equal(qa.correct, 1);
    assert.equal(qa.accuracy, 0.25);
    assert.equal(qa.calls, 8);
    const chats = server.chatRequests();
    assert.equal(chats.length, 8);
    const first = chats.find(
      (r) => r.model === 'answerer' && r.messages.some((m) => m.content.includes('How long did I wait')),
    );
    const prompt = first?.messages.map((m) => m.content).join('\n') ?? '';
    assert.match(prompt, /Question time: 2023\/05\/28 \(Sun\) 19:47/);
    assert.match(prompt, /asylum/i, 'the retrieved memories are in the prompt');
    const lines = readFileSync(join(out, 'qa.jsonl'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 4);
    const row = JSON.parse(lines[0] ?? '{}') as { question_id: string; correct: boolean; reference: string };
    assert.deepEqual([row.question_id, row.correct, row.reference], ['001be529', true, 'over a year']);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { qa: QaSummary };
    assert.equal(report.qa.accuracy, 0.25);
  });

  it('--dry-run counts the calls and sends nothing; --qa without an endpoint fails before ingesting', async () => {
    const before = server.chatRequests().length;
    const dry = await runCliInProcess([
      'bench',
      'longmemeval',
      '--data',
      oracle,
      '--out',
      join(dir.path, 'dry'),
      '--limit',
      '2',
      '--qa',
      '--dry-run',
      '--json',
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    const { qa } = lastJson(dry.stdout);
    assert.deepEqual([qa.dryRun, qa.calls, qa.plannedCalls], [true, 0, 4]);
    assert.equal(server.chatRequests().length, before);

    const missing = await runCliInProcess(
      ['bench', 'longmemeval', '--data', oracle, '--out', join(dir.path, 'none'), '--limit', '1', '--qa'],
      { LIGHTMEM_LLM_BASE_URL: '', OPENAI_BASE_URL: '' },
    );
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /--qa needs an OpenAI-compatible endpoint/);
    assert.doesNotMatch(missing.stderr, /ingesting/);
  });
});
