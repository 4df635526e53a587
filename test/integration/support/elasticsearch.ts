import { randomUUID } from 'node:crypto';
import { Client } from '@elastic/elasticsearch';
import {
  ElasticsearchMemoryStore,
  type ElasticsearchMemoryStoreOptions,
} from '../../../services/adapters/elasticsearch/elasticsearch-memory-store.js';

/** The Elasticsearch of `npm run infra:up`, or LIGHTMEM_TEST_ES_URL. */
export const esUrl = process.env['LIGHTMEM_TEST_ES_URL'] ?? 'http://127.0.0.1:19200';

/** An index prefix no other test run uses. */
export function freshPrefix(label = 'es'): string {
  return `t-${label}-${randomUUID().slice(0, 8)}-`;
}

/** A raw client for inspecting what the store wrote and for cleaning up. */
export function rawClient(): Client {
  return new Client({ node: esUrl });
}

/** Deletes every index, alias and index template of a prefix (wildcard deletes are refused by default). */
export async function deletePrefix(client: Client, prefix: string): Promise<void> {
  const indices = Object.keys(await client.indices.get({ index: `${prefix}*`, expand_wildcards: 'all' }));
  if (indices.length > 0) await client.indices.delete({ index: indices });
  const templates = await client.indices.getIndexTemplate({ name: `${prefix}*` }).catch(() => null);
  for (const { name } of templates?.index_templates ?? []) await client.indices.deleteIndexTemplate({ name });
}

/** A store on a fresh prefix whose close() also deletes everything the store created. */
export async function openFreshStore(
  options: Partial<ElasticsearchMemoryStoreOptions> = {},
): Promise<{ store: ElasticsearchMemoryStore; prefix: string }> {
  const prefix = freshPrefix();
  const store = await ElasticsearchMemoryStore.open({ node: esUrl, indexPrefix: prefix, ...options });
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    const client = rawClient();
    try {
      await deletePrefix(client, prefix);
    } finally {
      await client.close();
    }
  };
  return { store, prefix };
}
