import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, startServer, tempDir } from '../support/cli.js';

/** The README's curl commands, as a newcomer would paste them: method, URL and JSON body. */
function quickstartRequests(): { url: URL; body: string }[] {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const requests = [
    ...readme.matchAll(
      /^curl -s -X POST '([^']+)' -H "authorization: Bearer \$\(cat \.lightmem\/api-key\)" -H 'content-type: application\/json' -d '([^']+)'$/gm,
    ),
  ];
  return requests.map((match) => ({ url: new URL(match[1] ?? ''), body: match[2] ?? '' }));
}

describe('README quickstart', () => {
  const dir = tempDir('readme');
  let server: Awaited<ReturnType<typeof startServer>>;
  let base = '';

  before(async () => {
    server = await startServer(dir.path);
    base = server.base;
  });
  after(async () => {
    await server.stop();
    dir.remove();
  });

  it('documents the default address and the two requests, which work verbatim', async () => {
    const requests = quickstartRequests();
    assert.equal(
      requests.length,
      2,
      'README must show the POST /v1/events and POST /v1/search curl commands',
    );
    const [events, search] = requests;
    assert.equal(events?.url.origin, 'http://127.0.0.1:8787');
    assert.equal(events?.url.pathname, '/v1/events');
    assert.equal(search?.url.pathname, '/v1/search');

    const send = (request: { url: URL; body: string }): Promise<Response> =>
      fetch(`${base}${request.url.pathname}${request.url.search}`, {
        method: 'POST',
        // What `$(cat .lightmem/api-key)` reads: the key the first start wrote to the data dir.
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` },
        body: request.body,
      });
    const posted = await send(events);
    assert.equal(posted.status, 202);
    assert.equal(((await posted.json()) as { processed: boolean }).processed, true);
    const found = await send(search);
    assert.equal(found.status, 200);
    const { results } = (await found.json()) as { results: { text: string; sourceTurnIds: string[] }[] };
    assert.match(results[0]?.text ?? '', /Waffles/);
    assert.deepEqual(results[0]?.sourceTurnIds, ['1']);
  });
});
