import { join } from 'node:path';
import { SqliteMemoryStore } from '../../services/adapters/sqlite/sqlite-memory-store.js';

/** Every memory id of a tenant in a data dir (live and superseded), sorted. */
export async function memoryIds(dataDir: string, tenantId = 'default'): Promise<string[]> {
  const store = SqliteMemoryStore.open(join(dataDir, 'memories.db'));
  try {
    const ids: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await store.list({ scope: { tenantId }, limit: 1000, cursor, includeSuperseded: true });
      ids.push(...page.items.map((item) => item.id));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    return ids.sort();
  } finally {
    await store.close();
  }
}
