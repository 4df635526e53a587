// A process that consolidates one user of a data dir with the LLM policy (test/e2e/consolidation-durability):
// the parent kills it with SIGKILL mid-run and starts it again. argv: <data dir> <LLM base URL>.
import { HashingEmbedder } from './hashing-embedder.js';
import { openRuntime } from './embedded.js';

const [dataDir, baseUrl] = process.argv.slice(2);
if (dataDir === undefined || baseUrl === undefined) throw new Error('usage: consolidation-child <dir> <url>');
const runtime = await openRuntime(
  dataDir,
  {
    consolidation: { enabled: false, policy: 'llm', chunkSize: 3, parallelism: 1 },
    // The test reads the decisions back from the memory-ops topic: keep its consumed records.
    sqlite: { pruneConsumedMs: 0 },
    llm: { baseUrl, model: 'scripted', concurrency: 1 },
  },
  new HashingEmbedder(64),
);
const summary = await runtime.consolidate({ tenantId: 'acme', userId: 'u1' }, { dryRun: false });
console.log(JSON.stringify(summary.counts));
await runtime.close();
