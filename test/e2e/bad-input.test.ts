import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';

const good = (i: number, text: string): string =>
  JSON.stringify({
    tenantId: 'acme',
    userId: 'cust-1',
    conversationId: 'call-1',
    turnId: `t${i}`,
    seq: i,
    role: i % 2 === 0 ? 'customer' : 'agent',
    speaker: i % 2 === 0 ? 'Dana' : 'Agent Kim',
    text,
    occurredAt: `2024-03-01T10:0${i}:00+01:00`,
  });

describe('bad input', () => {
  const dir = tempDir('bad-input');
  after(() => dir.remove());
  const file = join(dir.path, 'turns.jsonl');
  const lines = [
    good(0, 'My router model is the Netgear R7000 and it keeps dropping wifi.'),
    '{"tenantId": "acme", "userId": "cust-1", oops this is not json',
    JSON.stringify({
      userId: 'cust-1',
      conversationId: 'call-1',
      turnId: 'x1',
      seq: 9,
      role: 'customer',
      text: 'no tenant',
      occurredAt: '2024-03-01T10:00:00Z',
    }),
    JSON.stringify({
      tenantId: 'acme',
      userId: 'cust-1',
      conversationId: 'call-1',
      turnId: 'x2',
      seq: 10,
      role: 'customer',
      text: 'bad time',
      occurredAt: 'the day after tomorrow',
    }),
    JSON.stringify({
      tenantId: 'acme',
      userId: 'cust-1',
      conversationId: 'call-1',
      turnId: 'x3',
      seq: 11,
      role: 'customer',
      text: 'x'.repeat(2 * 1024 * 1024),
      occurredAt: '2024-03-01T10:00:00Z',
    }),
    JSON.stringify({
      tenantId: 'acme',
      userId: 'cust-1',
      conversationId: 'call-1',
      turnId: 'x4',
      seq: 12,
      role: 'wizard',
      text: 'unknown role',
      occurredAt: '2024-03-01T10:00:00Z',
    }),
    good(1, 'I can replace it under warranty; your case number is 88123.'),
  ];
  writeFileSync(file, `${lines.join('\n')}\n`);

  it(
    'names the line and field of every bad item, processes the rest, and lists dead letters',
    { timeout: 60_000 },
    async () => {
      const result = await runCliInProcess(['ingest', file, '--format', 'jsonl', '--data-dir', dir.path]);
      assert.equal(result.code, 2, 'exit code 2 when items were rejected');
      const expected: [number, RegExp][] = [
        [2, /\(line\)|json/i],
        [3, /tenantId/],
        [4, /occurredAt/],
        [5, /text/],
        [6, /role/],
      ];
      for (const [line, field] of expected) {
        const message = result.stderr.split('\n').find((l) => l.includes(`turns.jsonl:${line}:`));
        assert.ok(message !== undefined, `no error for line ${line} in:\n${result.stderr.slice(0, 2000)}`);
        assert.match(message, field);
      }
      assert.match(result.stderr, /turns\.jsonl:5: text: .*(2097152|2 MiB|MiB|bytes)/);
      assert.match(result.stdout, /2 events appended|events appended/);

      const search = await runCliInProcess([
        'search',
        'router warranty',
        '--user',
        'cust-1',
        '--tenant',
        'acme',
        '--data-dir',
        dir.path,
        '--json',
      ]);
      assert.equal(search.code, 0, search.stderr);
      const rows = JSON.parse(search.stdout) as { sourceTurnIds: string[] }[];
      assert.deepEqual(rows.flatMap((r) => r.sourceTurnIds).sort(), ['t0', 't1']);

      const stats = await runCliInProcess(['stats', '--json', '--data-dir', dir.path]);
      const parsed = JSON.parse(stats.stdout) as {
        deadLetters: {
          count: number;
          recent: { sourceLine: number | null; field: string | null; reason: string }[];
        };
      };
      assert.equal(parsed.deadLetters.count, 5);
      assert.deepEqual(
        parsed.deadLetters.recent.map((d) => d.sourceLine),
        [2, 3, 4, 5, 6],
      );
      for (const letter of parsed.deadLetters.recent)
        assert.ok(letter.field !== null && letter.reason.length > 0);

      const text = await runCliInProcess(['stats', '--data-dir', dir.path]);
      assert.match(text.stdout, /dead letters 5/);
      assert.match(text.stdout, /turns\.jsonl:6: role/);

      // Ingesting the same bad file again neither duplicates the good turns nor the dead letters.
      await runCliInProcess(['ingest', file, '--format', 'jsonl', '--data-dir', dir.path]);
      const again = JSON.parse(
        (await runCliInProcess(['stats', '--json', '--data-dir', dir.path])).stdout,
      ) as {
        deadLetters: { count: number };
      };
      assert.equal(again.deadLetters.count, 5);
    },
  );

  it('a missing file or format is a clear error', async () => {
    const missing = await runCliInProcess([
      'ingest',
      join(dir.path, 'nope.jsonl'),
      '--format',
      'jsonl',
      '--data-dir',
      dir.path,
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /file: no such file/);
    const format = await runCliInProcess(['ingest', file, '--format', 'csv', '--data-dir', dir.path]);
    assert.match(format.stderr, /format: --format must be one of/);
  });
});
