import { join } from 'node:path';
import type { LightmemConfig } from '../core/config.js';
import type { Clock } from '../core/ports/clock.js';
import type { TenantDirectory } from '../core/ports/tenant-directory.js';
import { SqliteTenantDirectory } from '../adapters/sqlite/sqlite-tenant-directory.js';
import { ElasticsearchTenantDirectory } from '../adapters/elasticsearch/es-tenant-directory.js';
import { elasticsearchSecurityOf } from '../adapters/elasticsearch/es-client.js';
import { CachedTenantDirectory } from '../app/cached-tenant-directory.js';

/** How long an API replica trusts an answer of the shared directory: a revoked key is refused within it. */
export const authCacheTtlMs = 2_000;

/**
 * The deployment's tenants and API keys: `tenants.db` in the data dir (embedded; shared by every process of
 * the data dir, read on every request), or the `<prefix>tenants-v1` index (distributed; shared by every API
 * replica, whose answers a server reuses for at most `authCacheTtlMs`, so a revocation reaches every replica
 * within 2 s).
 */
export async function openTenantDirectory(
  config: LightmemConfig,
  clock: Clock,
  options: { serving?: boolean } = {},
): Promise<TenantDirectory> {
  if (config.mode === 'distributed') {
    const shared = await ElasticsearchTenantDirectory.open({
      node: config.elasticsearch.node,
      security: elasticsearchSecurityOf(config.elasticsearch),
      indexPrefix: config.elasticsearch.indexPrefix,
      clock,
    });
    return options.serving === true
      ? new CachedTenantDirectory(shared, { ttlMs: authCacheTtlMs, clock })
      : shared;
  }
  return SqliteTenantDirectory.open(join(config.dataDir, 'tenants.db'), { clock });
}
