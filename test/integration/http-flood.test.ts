import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startServer, tempDir } from '../support/cli.js';
import { apiClient } from '../support/api-client.js';

/** Peak resident memory of a process (Linux VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

describe('lightmem serve under a flood of large bodies', () => {
  it(
    '200 parallel 15 MB requests: no error but 429/503 (retry later), memory within the bound, normal service after',
    { timeout: 300_000 },
    async () => {
      const dir = tempDir('flood');
      // The bound under test: at most 64 MB of bodies admitted at once (the default is 128 MB).
      writeFileSync(
        join(dir.path, 'config.json'),
        JSON.stringify({ server: { maxInFlightBodyBytes: 64 * 1024 * 1024 } }),
      );
      const server = await startServer(dir.path);
      try {
        const pid = server.child.pid ?? 0;
        const client = apiClient(server.base, server.apiKey);
        const before = peakRssMiB(pid);
        // A body of valid JSON whose one event is invalid (text over 1 MiB): parsed, judged and rejected.
        const body = JSON.stringify({
          events: [
            {
              userId: 'u',
              conversationId: 'c',
              turnId: '1',
              role: 'user',
              occurredAt: 0,
              text: 'x'.repeat(15 * 1024 * 1024 - 200),
            },
          ],
        });
        const outcomes = await Promise.all(
          Array.from({ length: 200 }, () =>
            client
              .raw('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
              .then(async (response) => {
                await response.arrayBuffer();
                return String(response.status);
              })
              .catch(() => 'closed'),
          ),
        );
        const counts = outcomes.reduce<Record<string, number>>((tally, outcome) => {
          tally[outcome] = (tally[outcome] ?? 0) + 1;
          return tally;
        }, {});
        const peak = peakRssMiB(pid);
        console.log(
          JSON.stringify({
            outcomes: counts,
            rssBeforeMiB: Math.round(before),
            peakRssMiB: Math.round(peak),
          }),
        );
        assert.ok(
          Object.keys(counts).every((status) => ['202', '429', '503', 'closed'].includes(status)),
          JSON.stringify(counts),
        );
        assert.ok((counts['202'] ?? 0) > 0, 'some requests were served');
        assert.ok(peak - before < 1024, `peak RSS grew by ${Math.round(peak - before)} MiB`);
        const after = await client.post('/v1/search', { userId: 'u', query: 'anything' });
        assert.equal(after.status, 200);
        assert.equal((await client.get('/livez')).status, 200);
      } finally {
        await server.stop();
        dir.remove();
      }
    },
  );
});
