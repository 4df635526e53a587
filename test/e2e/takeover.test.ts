import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { startServer, tempDir } from '../support/cli.js';

const json = async (url: string, body?: unknown, apiKey?: string): Promise<Record<string, unknown>> => {
  const response = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      'content-type': 'application/json',
      ...(apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return (await response.json()) as Record<string, unknown>;
};

describe('two lightmem serve on one data dir', () => {
  it(
    'when the owner of the pipeline is killed (kill -9), the survivor takes over on its own and drains within 15 s',
    { timeout: 90_000 },
    async () => {
      const dir = tempDir('takeover');
      const servers = [await startServer(dir.path), await startServer(dir.path)];
      try {
        const healths = await Promise.all(servers.map((server) => json(`${server.base}/healthz`)));
        const ownerIndex = healths.findIndex((health) => health['pipeline'] === 'this process');
        assert.ok(ownerIndex >= 0, JSON.stringify(healths));
        const owner = servers[ownerIndex]!;
        const survivor = servers[1 - ownerIndex]!;
        assert.equal(healths[1 - ownerIndex]?.['ready'], true, JSON.stringify(healths));

        owner.child.kill('SIGKILL');
        await once(owner.child, 'exit');
        const killedAt = Date.now();
        // Only fire-and-forget clients: nobody waits on the pipeline.
        const posted = await fetch(`${survivor.base}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${survivor.apiKey}` },
          body: JSON.stringify({
            endSession: true,
            events: [
              {
                userId: 'ines',
                conversationId: 'call-5',
                turnId: '1',
                role: 'customer',
                text: 'My router model is TP-9000 and it reboots nightly.',
                occurredAt: '2024-05-02T09:00:00Z',
              },
              {
                userId: 'ines',
                conversationId: 'call-5',
                turnId: '2',
                role: 'agent',
                text: 'I will ship a replacement router tomorrow.',
                occurredAt: '2024-05-02T09:01:00Z',
              },
            ],
          }),
        });
        assert.equal(posted.status, 202);
        let found: unknown[] = [];
        while (Date.now() - killedAt < 15_000) {
          const answer = await json(
            `${survivor.base}/v1/search`,
            { userId: 'ines', query: 'router reboots replacement' },
            survivor.apiKey,
          );
          found = answer['results'] as unknown[];
          if (found.length === 2) break;
          await delay(200);
        }
        const searchableAfterMs = Date.now() - killedAt;
        assert.equal(found.length, 2, `searchable ${searchableAfterMs} ms after the kill`);
        console.log(JSON.stringify({ searchableAfterMs }));
        const health = await json(`${survivor.base}/healthz`);
        assert.deepEqual(
          { ready: health['ready'], pipeline: health['pipeline'] },
          { ready: true, pipeline: 'this process' },
        );
      } finally {
        await Promise.all(servers.map((server) => server.stop()));
        dir.remove();
      }
    },
  );
});
