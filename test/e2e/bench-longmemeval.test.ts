import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { locomoFile, sharedData, tempDir, type CliResult, lastJsonLine } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';

interface Summary {
  benchmark: string;
  baseline: string | null;
  cases: number;
  questions: number;
  scored: number;
  overall: Record<string, number>;
  sessionLevel?: Record<string, number>;
  byCategory: Record<string, Record<string, number>>;
  memories: number;
  keptRatio: number;
}

const lastJson = (result: CliResult): Summary => lastJsonLine(result) as Summary;

const oracle = join(sharedData, 'longmemeval-oracle-dev.json');

// Lexical only (the test CLI runs with LIGHTMEM_EMBEDDER=none).
describe('lightmem bench longmemeval --limit 6 (oracle, lexical only)', () => {
  const dir = tempDir('bench-lme');
  const out = join(dir.path, 'out');
  let summary: Summary;

  before(async () => {
    summary = lastJson(
      await runCliInProcess([
        'bench',
        'longmemeval',
        '--data',
        oracle,
        '--out',
        out,
        '--limit',
        '6',
        '--json',
      ]),
    );
  });
  after(() => dir.remove());

  it('one case per question; abstention and assistant-side questions asked but not scored', () => {
    assert.equal(summary.benchmark, 'longmemeval');
    assert.equal(summary.baseline, null);
    assert.equal(summary.cases, 6);
    assert.equal(summary.questions, 6);
    assert.equal(summary.scored, 4, 'the first six: two _abs');
    // R@B, not R@k: a long turn is several memories (one per chunk of sentences), each taking a rank.
    assert.ok((summary.overall['R@B1000'] ?? 0) > 0.5, `R@B1000 ${summary.overall['R@B1000']}`);
  });

  it("also reports LongMemEval's own session-level metrics, which a session-level hit can only raise", () => {
    const session = summary.sessionLevel ?? {};
    assert.deepEqual(Object.keys(session).sort(), [
      'ndcg_any@10',
      'ndcg_any@5',
      'recall_all@10',
      'recall_all@5',
      'recall_any@10',
      'recall_any@5',
    ]);
    // Any gold turn among the first k memories puts its session among the first k sessions.
    assert.ok((session['recall_any@5'] ?? 0) >= (summary.overall['All@5'] ?? 1), JSON.stringify(session));
    for (const value of Object.values(session)) assert.ok(value >= 0 && value <= 1);
  });

  it('retrieval.jsonl uses question_id and question_type, sources as <session_id>:<index>', () => {
    const rows = readFileSync(join(out, 'retrieval.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            question_id: string;
            question_type: string;
            retrieved: { sources: string[] }[];
          },
      );
    assert.equal(rows.length, 6);
    assert.deepEqual(Object.keys(rows[0] ?? {}), ['question_id', 'question_type', 'retrieved']);
    assert.equal(rows[0]?.question_id, '001be529');
    assert.equal(rows[0]?.question_type, 'single-session-user');
    const sources = rows[0]?.retrieved.slice(0, 10).flatMap((m) => m.sources) ?? [];
    assert.ok(sources.includes('answer_530960c1:4'), sources.join(', '));
    for (const row of rows)
      for (const m of row.retrieved) for (const s of m.sources) assert.match(s, /^[^#]+:\d+$/);
  });
});

describe('lightmem bench locomo --baseline bm25-raw', () => {
  const dir = tempDir('bench-baseline');
  after(() => dir.remove());

  it('writes every raw turn as one memory, uncompressed, and scores it', async () => {
    const out = join(dir.path, 'bm25');
    const summary = lastJson(
      await runCliInProcess([
        'bench',
        'locomo',
        '--data',
        locomoFile,
        '--out',
        out,
        '--limit',
        '1',
        '--baseline',
        'bm25-raw',
        '--json',
      ]),
    );
    assert.equal(summary.baseline, 'bm25-raw');
    assert.equal(summary.memories, 419, 'conv-26 has 419 turns');
    assert.equal(summary.keptRatio, 1);
    assert.ok((summary.overall['R@B1000'] ?? 0) > 0.5, `R@B1000 ${summary.overall['R@B1000']}`);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
      memories: { tokensPerSourceTurn: number };
    };
    assert.ok(report.memories.tokensPerSourceTurn > 30, 'full turns with their time and speaker');
  });

  it('refuses an unknown baseline, and dense baselines without an embedder', async () => {
    const bad = await runCliInProcess([
      'bench',
      'locomo',
      '--data',
      locomoFile,
      '--out',
      dir.path,
      '--baseline',
      'tfidf',
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--baseline must be one of bm25-raw, dense-raw, hybrid-raw/);
    const dense = await runCliInProcess([
      'bench',
      'locomo',
      '--data',
      locomoFile,
      '--out',
      join(dir.path, 'dense'),
      '--limit',
      '1',
      '--baseline',
      'dense-raw',
    ]);
    assert.notEqual(dense.code, 0);
    assert.match(dense.stderr, /needs an embedding model/);
  });
});
