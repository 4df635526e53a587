import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { schemathesisExecutable } from '../../infra/tools/schemathesis.js';
import { apiClient, type ApiClient } from '../support/api-client.js';
import { startServer, tempDir } from '../support/cli.js';

/**
 * A fuzzer that is not ours, driven by the live server's own `/openapi.json`: schemathesis (PyPI, installed
 * into the infra cache on first use, see infra/README.md) sends every operation schema-valid and
 * schema-violating requests (and requests with no key, undeclared methods, missing headers), then runs
 * stateful sequences it infers from the document. Every check it has must pass: no 5xx, status codes, content
 * types, headers and bodies as documented, invalid input refused, valid input accepted, 405 with Allow. Then
 * the turns accepted before the fuzz are still there, and the server still accepts and finds new ones.
 */

/** Test cases per operation and phase; LIGHTMEM_FUZZ_EXAMPLES raises it for a longer hunt. */
const examples = Number(process.env['LIGHTMEM_FUZZ_EXAMPLES'] ?? 100);
/** A random seed unless LIGHTMEM_FUZZ_SEED pins one (schemathesis prints the seed of every run). */
const seed = process.env['LIGHTMEM_FUZZ_SEED'];

/**
 * One setting of the project's own for schemathesis (its config file): an opaque value the schema cannot
 * describe. The `cursor` of GET /v1/users/{userId}/memories is a token the previous page returned
 * (base64url of JSON); the document says its alphabet and length, but a well-formed string the server never
 * issued is refused with 400 ("invalid cursor"). schemathesis's own explanation of ST202 names this case ("A
 * rejection the schema can't express, such as an unknown id … can be allowed for the operation") and this
 * setting is the one it gives: 400 counts as an accepted answer to schema-valid data for that one operation.
 */
const config = `
[[operations]]
include-operation-id = "listMemories"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
`;

interface Run {
  readonly code: number | null;
  readonly output: string;
  readonly seconds: number;
}

function schemathesis(executable: string, args: readonly string[], cwd: string): Promise<Run> {
  const started = Date.now();
  const child = spawn(executable, [...args], {
    cwd,
    env: { ...process.env, NO_COLOR: '1', COLUMNS: '120' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 12 * 60_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, seconds: (Date.now() - started) / 1000 });
    });
  });
}

async function waitUntilReady(client: ApiClient): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const ready = await client.get('/readyz');
    if (ready.status === 200) return;
    if (Date.now() > deadline) assert.fail(`the server is not ready: ${JSON.stringify(ready.json)}`);
    await sleep(250);
  }
}

/** A turn, ingested with `?wait=true` so that it is searchable when the answer comes. */
async function ingest(client: ApiClient, userId: string, text: string): Promise<void> {
  const answer = await client.post('/v1/events?wait=true', {
    events: [
      {
        userId,
        conversationId: 'c1',
        turnId: '1',
        role: 'user',
        text,
        occurredAt: '2024-05-08T13:56:00+02:00',
      },
    ],
    endSession: true,
  });
  assert.equal(answer.status, 202, JSON.stringify(answer.json));
  assert.equal(answer.json['accepted'], 1, JSON.stringify(answer.json));
  assert.equal(answer.json['processed'], true, JSON.stringify(answer.json));
}

async function found(client: ApiClient, userId: string, query: string): Promise<string[]> {
  const answer = await client.post<{ results: { text: string }[] }>('/v1/search', { userId, query });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  return answer.json.results.map((result) => result.text);
}

describe('the HTTP API under schemathesis, from its own OpenAPI document', () => {
  it(
    'every operation, valid and hostile input: no 5xx, every answer as documented, accepted data kept',
    { timeout: 25 * 60_000 },
    async () => {
      const st = await schemathesisExecutable();
      const dir = tempDir('fuzz');
      const work = tempDir('fuzz-work');
      // The per-key rate limit would answer 429 to the fuzzer's bursts and hide what the request would
      // have found; 429 itself is documented for every operation.
      writeFileSync(
        join(dir.path, 'config.json'),
        JSON.stringify({ server: { rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } } }),
      );
      writeFileSync(join(work.path, 'schemathesis.toml'), config);
      const server = await startServer(dir.path, { LIGHTMEM_EMBEDDER: 'none' });
      const errors: string[] = [];
      server.child.stderr?.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().split('\n'))
          if (line.includes('"level":"error"')) errors.push(line);
      });
      try {
        const client = apiClient(server.base, server.apiKey);
        // /healthz and /readyz answer 503 (documented) until the pipeline runs: the fuzzer would count it.
        await waitUntilReady(client);
        // Accepted before the fuzz, under a user the fuzzer will not name: it must survive everything the
        // fuzzer does (erasures of other users, replays started, switched to and dropped).
        const canary = `canary-${randomUUID()}`;
        await ingest(client, canary, 'The canary nests in the old lighthouse on Farol island');
        assert.ok((await found(client, canary, 'lighthouse canary')).length > 0, 'the canary is searchable');

        const common = [
          'run',
          `${server.base}/openapi.json`,
          '--header',
          `Authorization: Bearer ${server.apiKey}`,
          '--workers',
          '1',
          '--max-examples',
          String(examples),
          '--checks',
          'all',
          // POST /v1/events?wait=true may wait up to 30 s for the pipeline.
          '--request-timeout',
          '45',
          '--generation-database',
          'none',
          '--no-color',
          ...(seed === undefined ? [] : ['--seed', seed]),
        ];
        const runs: { name: string; run: Run }[] = [];
        // 1. Every phase (coverage, fuzzing, stateful), valid and invalid data, any Unicode.
        runs.push({
          name: 'all modes, Unicode',
          run: await schemathesis(
            st,
            [
              '--config-file',
              join(work.path, 'schemathesis.toml'),
              ...common,
              '--mode',
              'all',
              // Judged in run 2. schemathesis decides whether a string it drew violates a `pattern` with
              // Python approximations of the Unicode classes: `\p{L}` as Latin letters, `\p{N}` as 0-9
              // (schemathesis/core/jsonschema/patterns.py, "PCRE/Java/JS -> Python approximations"). Our ids'
              // pattern `^[\p{L}\p{N}_.:@\-/#]{1,200}$` is ECMA-262, the dialect of JSON Schema, and there
              // `³` or `λ` match it: the server accepts them, and schemathesis's own validator (jsonschema_rs)
              // agrees they are valid, but its generator reports "Schema-violating request accepted"
              // (DELETE /v1/users/%C2%B3 answered 200). Only this one check is moved to run 2.
              '--exclude-checks',
              'negative_data_rejection',
            ],
            work.path,
          ),
        });
        // 2. Invalid data only, drawn from ASCII, where the approximations above are exact: every
        //    schema-violating request must be refused with a documented 4xx.
        runs.push({
          name: 'invalid data, ASCII',
          run: await schemathesis(
            st,
            [
              '--config-file',
              join(work.path, 'schemathesis.toml'),
              ...common,
              '--mode',
              'negative',
              '--generation-codec',
              'ascii',
              '--phases',
              'coverage,fuzzing',
            ],
            work.path,
          ),
        });
        for (const { name, run } of runs) {
          const summary = run.output.trim().split('\n').slice(-12).join('\n');
          console.log(`schemathesis (${name}): exit ${run.code} in ${run.seconds.toFixed(0)} s\n${summary}`);
        }
        for (const { name, run } of runs)
          assert.equal(run.code, 0, `schemathesis (${name}) found problems:\n${run.output}`);
        assert.deepEqual(errors, [], 'the server logged errors during the fuzz');
        assert.equal(server.child.exitCode, null, 'the server is still running');

        // Accepted data is not lost: the turn from before the fuzz, and one accepted after it.
        await waitUntilReady(client);
        assert.ok(
          (await found(client, canary, 'lighthouse canary')).some((text) => /lighthouse/.test(text)),
          'the turn accepted before the fuzz is still searchable',
        );
        const after = `after-${randomUUID()}`;
        await ingest(client, after, 'Ines keeps her kayak at the marina in Setubal');
        assert.ok(
          (await found(client, after, 'kayak marina')).some((text) => /kayak/.test(text)),
          'a turn accepted after the fuzz is searchable',
        );
      } finally {
        await server.stop();
        dir.remove();
        work.remove();
      }
    },
  );
});
