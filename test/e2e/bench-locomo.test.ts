import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { locomoFile, tempDir, type CliResult, lastJsonLine } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';

interface Summary {
  benchmark: string;
  cases: number;
  questions: number;
  scored: number;
  overall: Record<string, number>;
  byCategory: Record<string, Record<string, number>>;
  memories: number;
}

interface RetrievalRow {
  question_id: string;
  category: number;
  retrieved: { id: string; score: number; text: string; sources: string[] }[];
}

const lastJson = (result: CliResult): Summary => lastJsonLine(result) as Summary;

// Lexical only (the test CLI runs with LIGHTMEM_EMBEDDER=none), first sample only: a few seconds.
describe('lightmem bench locomo --limit 1 (lexical only)', () => {
  const dir = tempDir('bench-locomo');
  const out = join(dir.path, 'out');
  let summary: Summary;

  before(async () => {
    summary = lastJson(
      await runCliInProcess([
        'bench',
        'locomo',
        '--data',
        locomoFile,
        '--out',
        out,
        '--limit',
        '1',
        '--json',
      ]),
    );
  });
  after(() => dir.remove());

  it('prints one JSON object of the overall figures last', () => {
    assert.equal(summary.benchmark, 'locomo');
    assert.equal(summary.cases, 1);
    assert.equal(summary.questions, 199);
    assert.equal(summary.scored, 150, 'conv-26: categories 1–4 with gold');
    assert.deepEqual(Object.keys(summary.byCategory), ['1', '2', '3', '4']);
    assert.ok(summary.memories > 300, `memories ${summary.memories}`);
  });

  it('finds a plausible share of the gold evidence (R@10 on categories 1–4)', () => {
    const r10 = summary.overall['R@10'] ?? 0;
    assert.ok(r10 > 0.3, `R@10 ${r10}`);
    for (const key of ['R@5', 'R@10', 'R@20', 'R@50', 'All@5', 'All@50', 'R@B500', 'R@B1000', 'R@B2000'])
      assert.ok((summary.overall[key] ?? -1) >= 0 && (summary.overall[key] ?? 2) <= 1, key);
    assert.ok((summary.overall['R@5'] ?? 0) <= (summary.overall['R@50'] ?? 0));
    assert.ok((summary.overall['All@10'] ?? 0) <= r10);
  });

  it('writes retrieval.jsonl: every question, top 50 best first, with prompt text and sources', () => {
    const rows = readFileSync(join(out, 'retrieval.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as RetrievalRow);
    assert.equal(rows.length, 199);
    rows.forEach((row, i) => {
      assert.deepEqual(Object.keys(row), ['question_id', 'category', 'retrieved']);
      assert.equal(row.question_id, `conv-26#${i}`);
      assert.ok([1, 2, 3, 4, 5].includes(row.category));
      assert.ok(row.retrieved.length <= 50);
      for (const [rank, memory] of row.retrieved.entries()) {
        assert.deepEqual(Object.keys(memory), ['id', 'score', 'text', 'sources']);
        assert.match(memory.text, /^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\] (Caroline|Melanie): /);
        assert.ok(memory.sources.length > 0);
        for (const source of memory.sources) assert.match(source, /^D\d+:\d+$/);
        if (rank > 0) assert.ok(memory.score <= (row.retrieved[rank - 1]?.score ?? 1));
      }
    });
    assert.equal(rows.filter((row) => row.retrieved.length === 50).length > 150, true);
    const first = rows[0]?.retrieved.slice(0, 5).flatMap((m) => m.sources) ?? [];
    assert.ok(first.includes('D1:3'), `conv-26#0 top-5 sources: ${first.join(', ')}`);
  });

  it('writes report.json, report.md and recall.svg', () => {
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
      questions: { asked: number; byCategory: Record<string, number> };
      recall: { overall: { questions: number }; byCategory: Record<string, { questions: number }> };
      memories: { total: number; tokensPerSourceTurn: number; sourceTurns: number };
      compression: { turns: number; originalTokens: number; keptTokens: number };
      ingest: { seconds: number; turns: number; accepted: number; rejected: number };
      search: { limit: number; count: number; p50Ms: number; p99Ms: number };
      llm: { mode: string; calls: number; promptTokens: number };
      config: { compressor: { rate: number }; embedder: string | null; summarizer: { granularity: string } };
      files: { dataDir: string };
    };
    assert.deepEqual(report.questions.byCategory, { 1: 32, 2: 37, 3: 13, 4: 70, 5: 47 });
    assert.equal(report.recall.overall.questions, 150);
    assert.equal(report.recall.byCategory['3']?.questions, 11);
    assert.equal(report.compression.turns, 419);
    assert.ok(report.compression.keptTokens <= report.compression.originalTokens);
    assert.equal(report.ingest.turns, 419);
    assert.equal(report.ingest.rejected, 0);
    assert.ok(report.ingest.seconds > 0);
    assert.ok(report.memories.tokensPerSourceTurn > 5 && report.memories.sourceTurns <= 419);
    assert.equal(report.search.limit, 200);
    assert.equal(report.search.count, 199);
    assert.ok(report.search.p50Ms <= report.search.p99Ms);
    assert.equal(report.llm.mode, 'off');
    assert.equal(report.llm.calls, 0);
    assert.equal(report.config.embedder, null);
    assert.equal(typeof report.config.compressor.rate, 'number');
    assert.ok(report.files.dataDir.startsWith(out), 'a fresh data dir under --out');

    const markdown = readFileSync(join(out, 'report.md'), 'utf8');
    assert.match(markdown, /\| overall \| 150 \|/);
    assert.match(markdown, /\| 4 single-hop \| 70 \|/);
    const svg = readFileSync(join(out, 'recall.svg'), 'utf8');
    assert.match(svg, /^<svg /);
    assert.equal(svg.match(/<polyline /g)?.length, 5, 'overall and categories 1–4');
  });

  it('a second run into the same --out ingests into a new data dir and prints the table', async () => {
    const result = await runCliInProcess([
      'bench',
      'locomo',
      '--data',
      locomoFile,
      '--out',
      out,
      '--limit',
      '1',
    ]);
    const again = lastJson(result);
    assert.deepEqual(again.overall, summary.overall, 'deterministic');
    assert.match(result.stdout, /^overall +150 /m);
    assert.match(result.stderr, /ingesting .*1\/1 samples/);
    assert.equal(readdirSync(out).filter((name) => name.startsWith('data-')).length, 2);
  });
});
