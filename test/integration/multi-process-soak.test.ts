import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';
import type { MemoryEntry } from '../../services/core/model/generated.js';
import { collect, lastJsonLine, locomoFile, runCli, spawnCli, startServer, tempDir } from '../support/cli.js';

const soakMs = Number(process.env['LIGHTMEM_SOAK_SECONDS'] ?? 60) * 1000;

/** Every memory of a tenant, live or not. */
async function memoriesOf(dataDir: string, tenantId: string): Promise<MemoryEntry[]> {
  const store = SqliteMemoryStore.open(join(dataDir, 'memories.db'));
  try {
    const all: MemoryEntry[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await store.list({ scope: { tenantId }, limit: 1000, cursor, includeSuperseded: true });
      all.push(...page.items);
      if (page.nextCursor === null) return all;
      cursor = page.nextCursor;
    }
  } finally {
    await store.close();
  }
}

/** What a memory is about, independent of its tenant (ids hash the tenant in). */
function shape(memory: MemoryEntry): string {
  return JSON.stringify([memory.userId, memory.conversationId, memory.kind, memory.sourceTurnIds]);
}

interface Problems {
  readonly answers: string[];
  readonly health: string[];
}

describe('two lightmem serve and a lightmem ingest on one data dir, under load', () => {
  it(
    `for ${soakMs / 1000} s: every accepted turn becomes a memory exactly once, no 500, health ready throughout`,
    { timeout: 20 * 60_000 },
    async () => {
      const dir = tempDir('soak');
      const reference = tempDir('soak-reference');
      const problems: Problems = { answers: [], health: [] };
      const servers = [await startServer(dir.path), await startServer(dir.path)];
      try {
        const { apiKey } = lastJsonLine(
          await runCli(['tenant', 'create', 'http', '--json', '--data-dir', dir.path]),
        ) as { apiKey: string };
        // What one file makes on its own (the file ingests below must each make exactly this).
        const clean = await runCli([
          'ingest',
          locomoFile,
          '--format',
          'locomo',
          '--tenant',
          'file',
          '--data-dir',
          reference.path,
          '--quiet',
        ]);
        assert.equal(clean.code, 0, clean.stderr);
        const expectedFile = (await memoriesOf(reference.path, 'file')).map(shape).sort();

        const deadline = Date.now() + soakMs;
        const accepted = new Map<string, number>(); // "user/conversation/turn" → times accepted
        let posts = 0;
        let busy = 0;
        let waitedUnprocessed = 0;

        const health = async (): Promise<void> => {
          while (Date.now() < deadline) {
            for (const [index, server] of servers.entries()) {
              const response = await fetch(`${server.base}/healthz`);
              const body = (await response.json()) as { ready?: boolean };
              if (response.status !== 200 || body.ready !== true)
                problems.health.push(`server ${index}: ${response.status} ${JSON.stringify(body)}`);
            }
            await sleep(250);
          }
        };

        const client = async (id: number): Promise<void> => {
          const server = servers[id % servers.length]!;
          for (let n = 0; Date.now() < deadline; n++) {
            const conversationId = `c${id}-${n}`;
            // A call of 6 turns in 2 posts; the second ends it; every other call waits for processing.
            for (const part of [0, 1]) {
              const events = [0, 1, 2].map((i) => {
                const turn = part * 3 + i;
                return {
                  tenantId: 'http',
                  userId: `u${id}`,
                  conversationId,
                  turnId: String(turn),
                  role: turn % 2 === 0 ? 'customer' : 'agent',
                  text: `Call ${conversationId} turn ${turn}: order ${id * 1000 + n} ${turn % 2 === 0 ? 'arrived damaged' : 'will be replaced'}.`,
                  occurredAt: new Date(Date.UTC(2025, 0, 1, 9, 0, turn)).toISOString(),
                };
              });
              const wait = part === 1 && n % 2 === 0;
              for (;;) {
                const response = await fetch(`${server.base}/v1/events${wait ? '?wait=true' : ''}`, {
                  method: 'POST',
                  headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
                  body: JSON.stringify({ events, endSession: part === 1 }),
                });
                posts++;
                const body = (await response.json()) as Record<string, unknown>;
                if (
                  (response.status === 503 || response.status === 429) &&
                  response.headers.get('retry-after') !== null
                ) {
                  busy++;
                  await sleep(Number(response.headers.get('retry-after')) * 100);
                  continue;
                }
                if (response.status !== 202) {
                  problems.answers.push(`${response.status} ${JSON.stringify(body)}`);
                  break;
                }
                for (const event of events) {
                  const key = `${event.userId}/${conversationId}/${event.turnId}`;
                  accepted.set(key, (accepted.get(key) ?? 0) + 1);
                }
                if (wait && body['processed'] !== true) waitedUnprocessed++;
                break;
              }
            }
          }
        };

        const ingests = async (): Promise<number> => {
          let runs = 0;
          while (Date.now() < deadline) {
            const result = await collect(
              spawnCli([
                'ingest',
                locomoFile,
                '--format',
                'locomo',
                '--tenant',
                `file-${runs}`,
                '--data-dir',
                dir.path,
                '--quiet',
              ]),
            );
            if (result.code !== 0)
              problems.answers.push(`ingest ${runs}: exit ${result.code}: ${result.stderr}`);
            runs++;
          }
          return runs;
        };

        const [fileRuns] = await Promise.all([ingests(), health(), ...[0, 1, 2, 3].map(client)]);

        // Drain: every turn accepted anywhere is processed by whichever process runs the pipeline.
        const drainDeadline = Date.now() + 5 * 60_000;
        for (;;) {
          const body = (await (await fetch(`${servers[0]!.base}/healthz`)).json()) as {
            pending: Record<string, number>;
          };
          if (Object.values(body.pending).every((n) => n === 0)) break;
          assert.ok(Date.now() < drainDeadline, `not drained: ${JSON.stringify(body)}`);
          await sleep(250);
        }

        assert.deepEqual(problems.answers, [], 'answers other than 202 (or 503 with Retry-After)');
        assert.deepEqual(
          problems.health.slice(0, 10),
          [],
          `${problems.health.length} health answers not ready`,
        );
        assert.equal(waitedUnprocessed, 0, 'wait=true on an ended session answered processed: false');

        const httpMemories = await memoriesOf(dir.path, 'http');
        const cited = new Map<string, number>();
        for (const memory of httpMemories) {
          for (const turn of memory.sourceTurnIds) {
            const key = `${memory.userId}/${memory.conversationId}/${turn}`;
            cited.set(key, (cited.get(key) ?? 0) + 1);
          }
        }
        const missing = [...accepted.keys()].filter((key) => !cited.has(key));
        const twice = [...cited].filter(([, count]) => count > 1);
        assert.deepEqual(missing.slice(0, 10), [], `${missing.length} accepted turns are not memories`);
        assert.deepEqual(twice.slice(0, 10), [], `${twice.length} turns are cited by more than one memory`);
        assert.equal(cited.size, accepted.size);
        for (let run = 0; run < fileRuns; run++) {
          const made = (await memoriesOf(dir.path, `file-${run}`)).map(shape).sort();
          assert.deepEqual(made, expectedFile, `file ingest ${run} made other memories than a clean ingest`);
        }
        console.log(
          JSON.stringify({
            soakSeconds: soakMs / 1000,
            posts,
            busy503: busy,
            turns: accepted.size,
            fileRuns,
          }),
        );
      } finally {
        await Promise.all(servers.map((server) => server.stop()));
        dir.remove();
        reference.remove();
      }
    },
  );
});
