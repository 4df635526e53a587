import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidInputError } from '../core/errors.js';
import { SqliteMemoryStore } from '../adapters/sqlite/sqlite-memory-store.js';
import { ElasticsearchMemoryStore } from '../adapters/elasticsearch/elasticsearch-memory-store.js';
import { elasticsearchSecurityOf } from '../adapters/elasticsearch/es-client.js';
import {
  formatScaleReport,
  runScaleBench,
  type ScaleLayout,
  type ScaleStoreKind,
} from '../bench/scale-bench.js';
import { commonOptions, intOption, parse, stringOption } from './args.js';
import { commandConfig } from './context.js';
import { scaleBenchUsage } from './bench-usage.js';

export async function scaleBench(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    ...commonOptions,
    sizes: { type: 'string' },
    queries: { type: 'string' },
    limit: { type: 'string' },
    users: { type: 'string' },
    layouts: { type: 'string' },
    dims: { type: 'string' },
    seed: { type: 'string' },
    dir: { type: 'string' },
    elasticsearch: { type: 'boolean' },
    'elasticsearch-url': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values['help'] === true) {
    console.log(scaleBenchUsage);
    return 0;
  }
  const sizes = (stringOption(values, 'sizes') ?? '1000,10000,100000').split(',').map((part) => {
    const size = Number(part.trim());
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new InvalidInputError(`--sizes must be positive integers (got ${part})`, 'sizes');
    }
    return size;
  });
  const layouts = (stringOption(values, 'layouts') ?? 'user,tenant').split(',').map((part) => {
    if (part !== 'user' && part !== 'tenant') {
      throw new InvalidInputError(`--layouts takes user and tenant (got ${part})`, 'layouts');
    }
    return part satisfies ScaleLayout;
  });
  const queries = intOption(values, 'queries', 200);
  if (queries < 1) throw new InvalidInputError('--queries must be at least 1', 'queries');
  const given = stringOption(values, 'dir');
  const dir = given ?? mkdtempSync(join(tmpdir(), 'lightmem-bench-scale-'));
  const stores: ScaleStoreKind[] = [sqliteKind(dir)];
  const esUrl = stringOption(values, 'elasticsearch-url');
  if (values['elasticsearch'] === true || esUrl !== undefined) {
    const config = commandConfig(values);
    const es = config.elasticsearch;
    const run = randomUUID().slice(0, 8);
    stores.push({
      name: 'elasticsearch',
      exact: false,
      open: async (label) => {
        const store = await ElasticsearchMemoryStore.open({
          node: esUrl ?? es.node,
          security: elasticsearchSecurityOf(es),
          indexPrefix: `${es.indexPrefix}bench-scale-${run}-${label}-`,
          refresh: 'wait_for',
        });
        return {
          store,
          close: async () => {
            try {
              await store.deleteIndices();
            } finally {
              await store.close();
            }
          },
        };
      },
    });
  }
  const quiet = values['json'] === true;
  const report = await runScaleBench({
    sizes,
    layouts,
    queries,
    limit: intOption(values, 'limit', 10),
    tenantUsers: intOption(values, 'users', 100),
    dims: intOption(values, 'dims', 384),
    seed: intOption(values, 'seed', 42),
    stores,
    onProgress: (message) => {
      if (!quiet) process.stderr.write(`${message}\n`);
    },
  }).finally(() => {
    if (given === undefined) rmSync(dir, { recursive: true, force: true });
  });
  if (!quiet) for (const line of formatScaleReport(report)) console.log(line);
  console.log(JSON.stringify(report));
  return 0;
}

/** SQLite stores as files of `dir`, removed once measured. */
export function sqliteKind(dir: string): ScaleStoreKind {
  return {
    name: 'sqlite',
    exact: true,
    open: async (label) => {
      const file = join(dir, `${label}.db`);
      const store = SqliteMemoryStore.open(file);
      return {
        store,
        close: async () => {
          await store.close();
          for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });
        },
      };
    },
  };
}
