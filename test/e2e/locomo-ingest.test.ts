import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { locomoFile, tempDir } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';
import { memoryIds } from '../support/store-snapshot.js';

interface SearchRow {
  id: string;
  score: number;
  text: string;
  speaker: string;
  occurredAt: string;
  sourceTurnIds: string[];
  userId: string;
}

describe('lightmem ingest + search on LoCoMo (embedded default)', () => {
  const dir = tempDir('locomo');
  let firstIds: string[] = [];

  before(async () => {
    const result = await runCliInProcess([
      'ingest',
      locomoFile,
      '--format',
      'locomo',
      '--data-dir',
      dir.path,
      '--json',
    ]);
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as {
      accepted: number;
      memories: { live: number };
    };
    assert.ok(summary.accepted > 3000, `accepted ${summary.accepted}`);
    assert.ok(summary.memories.live > 3000, `memories ${summary.memories.live}`);
    firstIds = await memoryIds(dir.path);
  });
  after(() => dir.remove());

  it('finds the gold turn D1:3 for "When did Caroline go to the LGBTQ support group?"', async () => {
    const result = await runCliInProcess([
      'search',
      'When did Caroline go to the LGBTQ support group?',
      '--user',
      'conv-26',
      '--data-dir',
      dir.path,
      '--json',
    ]);
    assert.equal(result.code, 0, result.stderr);
    const rows = JSON.parse(result.stdout) as SearchRow[];
    assert.ok(rows.length > 0);
    const top = rows.slice(0, 5).flatMap((row) => row.sourceTurnIds);
    assert.ok(top.includes('D1:3'), `top-5 sources: ${top.join(', ')}`);
    for (const row of rows) {
      assert.equal(row.userId, 'conv-26');
      assert.match(row.occurredAt, /^\d{4}-\d{2}-\d{2}T/);
      assert.ok(row.speaker.length > 0);
    }
  });

  it('prints ranked memories with score, time, speaker, text and sources', async () => {
    const result = await runCliInProcess([
      'search',
      'LGBTQ support group',
      '--user',
      'conv-26',
      '--data-dir',
      dir.path,
      '--limit',
      '3',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^ 1\. \d\.\d{3} {2}2023-\d{2}-\d{2}T[\d:]+Z {2}\w+: /m);
    assert.match(result.stdout, /sources: D\d+:\d+/);
  });

  it('is idempotent: ingesting the same file again changes nothing', async () => {
    const again = await runCliInProcess([
      'ingest',
      locomoFile,
      '--format',
      'locomo',
      '--data-dir',
      dir.path,
      '--json',
    ]);
    assert.equal(again.code, 0, again.stderr);
    const summary = JSON.parse(again.stdout.trim().split('\n').at(-1) ?? '{}') as {
      accepted: number;
      duplicates: number;
    };
    assert.equal(summary.accepted, 0);
    assert.ok(summary.duplicates > 3000);
    assert.deepEqual(await memoryIds(dir.path), firstIds);
  });

  it('stats reports events, memories and nothing pending', async () => {
    const result = await runCliInProcess(['stats', '--json', '--data-dir', dir.path]);
    assert.equal(result.code, 0, result.stderr);
    const stats = JSON.parse(result.stdout) as {
      events: { appended: number };
      memories: { live: number; superseded: number };
      stages: { stage: string; pending: number }[];
    };
    assert.ok(stats.events.appended > 3000);
    assert.equal(stats.memories.live, firstIds.length);
    assert.deepEqual(
      stats.stages.map((s) => [s.stage, s.pending]),
      [
        ['compressor', 0],
        ['segmenter', 0],
        ['summarizer', 0],
        ['indexer', 0],
        ['applier', 0],
      ],
    );
  });
});
