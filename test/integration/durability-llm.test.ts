import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { locomoFile, tempDir } from '../support/cli.js';
import { killAndCompare } from '../support/durability.js';
import { factPerLine, startFakeOpenAiServer, type FakeOpenAiServer } from '../support/fake-openai-server.js';

/** Paid calls (answered by the endpoint, not reused) per request in a data dir's ledger. */
function paidCalls(dataDir: string): { calls: number; requests: number; maxPerRequest: number } {
  const db = new Database(join(dataDir, 'ledger.db'), { readonly: true });
  try {
    const rows = db
      .prepare(
        `SELECT request_hash, COUNT(*) AS n FROM llm_calls WHERE outcome NOT IN ('reused', 'failed') GROUP BY request_hash`,
      )
      .all() as { request_hash: string; n: number }[];
    return {
      calls: rows.reduce((sum, row) => sum + row.n, 0),
      requests: rows.length,
      maxPerRequest: Math.max(0, ...rows.map((row) => row.n)),
    };
  } finally {
    db.close();
  }
}

describe('durability under kill -9 with the LLM extractor (scripted endpoint)', () => {
  const dir = tempDir('durability-llm');
  let server: FakeOpenAiServer;
  // The first LoCoMo conversation (419 turns): enough batches to crash among, quick to run twice.
  const file = join(dir.path, 'locomo-first.json');

  before(async () => {
    const samples = JSON.parse(readFileSync(locomoFile, 'utf8')) as unknown[];
    writeFileSync(file, JSON.stringify(samples.slice(0, 1)));
    server = await startFakeOpenAiServer({
      models: ['scripted'],
      // A little latency, as an endpoint has: kills land while calls are in flight too.
      responder: async (request) => {
        await delay(15);
        return factPerLine(request.messages.at(-1)?.content ?? '');
      },
    });
  });
  after(async () => {
    await server.close();
    dir.remove();
  });

  it(
    'ends with the memories of an uninterrupted run, and no committed batch is paid for twice',
    { timeout: 240_000 },
    () =>
      killAndCompare({
        file,
        tenants: ['default'],
        env: { LIGHTMEM_LLM_BASE_URL: server.baseUrl, LIGHTMEM_LLM_MODEL: 'scripted' },
        // One call in flight: a crash can lose at most one answer.
        config: { llm: { concurrency: 1 }, pipeline: { batchSize: 16, stageBatchSize: { summarizer: 4 } } },
        check: ({ victim, reference, kills }) => {
          const clean = paidCalls(reference);
          const crashed = paidCalls(victim);
          assert.ok(clean.calls > 20, `the reference run extracted with the LLM (${clean.calls} calls)`);
          assert.equal(clean.maxPerRequest, 1);
          assert.equal(crashed.maxPerRequest, 1, 'a request answered before a crash is never paid again');
          assert.equal(crashed.requests, clean.requests, 'the same batches were extracted');
          // Every request the endpoint saw: the reference's, then the victim's.
          const victimSent = server.chatRequests().length - clean.calls;
          assert.ok(
            victimSent <= crashed.requests + kills,
            `at most one repeated call per crash: ${victimSent} sent for ${crashed.requests} requests, ${kills} kills`,
          );
        },
      }),
  );
});
