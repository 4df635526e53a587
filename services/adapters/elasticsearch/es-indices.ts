import { createHash } from 'node:crypto';
import type { Client, estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import { LightmemError } from '../../core/errors.js';
import { errorTypeOf, statusOf } from './es-errors.js';
import {
  LATER_FIELDS,
  TEMPLATE_VERSION,
  TEXT_ANALYZER,
  firstIndex,
  indexSettings,
  memoryMappings,
  type AliasNames,
  type IndexNames,
} from './es-mapping.js';

/**
 * Creation of the template, the first index version with its alias, and the per-tenant filtered aliases.
 * Every step is idempotent and safe when two processes run it at once: a lost creation race reads what
 * the winner created.
 */

/** Token filters of the text analyzer, after the standard tokenizer. */
const FULL_FILTERS = ['lowercase', 'asciifolding', 'porter_stem'];
/** Servers without the analysis-common module (the integ-test distribution) have only `lowercase`. */
const BASIC_FILTERS = ['lowercase'];

/**
 * Makes sure the template, an index and the alias exist, and that every index behind the alias maps the
 * fields added since template version 1; returns the index the alias writes to.
 */
export async function ensureMemoryIndex(client: Client, names: IndexNames): Promise<string> {
  await ensureTemplate(client, names);
  // The template gives the first index its settings and mapping.
  const index = await ensureAliasedIndex(client, names, {});
  // An index made from an older template lacks them; adding fields to a live mapping is allowed (idempotent).
  await client.indices.putMapping({ index: names.alias, properties: { ...LATER_FIELDS } });
  return index;
}

/**
 * A small bookkeeping index behind its alias (one shard, a replica where the cluster has a second node):
 * recorded ops, erased users. Idempotent and race-safe; returns the write index.
 */
export async function ensureSmallIndex(
  client: Client,
  names: AliasNames,
  mappings: estypes.MappingTypeMapping,
): Promise<string> {
  return ensureAliasedIndex(client, names, {
    settings: { number_of_shards: 1, auto_expand_replicas: '0-1' },
    mappings,
  });
}

/** Document id of something named within a tenant: of bounded length whatever the ids hold. */
export function tenantDocId(tenantId: string, id: string): string {
  return createHash('sha256')
    .update(JSON.stringify([tenantId, id]))
    .digest('hex');
}

/**
 * Makes sure `names.alias` exists with a write index (creating the first version with `body` when it is
 * missing) and that its shard is ready; returns the write index.
 */
export async function ensureAliasedIndex(
  client: Client,
  names: AliasNames,
  body: Pick<estypes.IndicesCreateRequest, 'settings' | 'mappings'>,
): Promise<string> {
  let index = await writeIndexOf(client, names.alias);
  if (index === null) {
    try {
      await client.indices.create({
        index: firstIndex(names),
        aliases: { [names.alias]: { is_write_index: true } },
        ...body,
      });
    } catch (error) {
      if (errorTypeOf(error) !== 'resource_already_exists_exception') throw error;
    }
    index = await writeIndexOf(client, names.alias);
    if (index === null) {
      // The first index exists without its alias (someone removed it): put it back.
      index = firstIndex(names);
      await client.indices.updateAliases({
        actions: [{ add: { index, alias: names.alias, is_write_index: true } }],
      });
    }
  }
  // Another process may have just created it: wait until its shard can take reads and writes.
  await client.cluster.health({ index, wait_for_status: 'yellow', timeout: '30s' });
  return index;
}

const templatesSchema = z.object({
  index_templates: z.array(
    z.object({ name: z.string(), index_template: z.object({ version: z.number().optional() }).loose() }),
  ),
});

async function ensureTemplate(client: Client, names: IndexNames): Promise<void> {
  try {
    const found = templatesSchema.parse(await client.indices.getIndexTemplate({ name: names.template }));
    const version = found.index_templates[0]?.index_template.version;
    if (version !== undefined && version >= TEMPLATE_VERSION) return;
  } catch (error) {
    if (statusOf(error) !== 404) throw error;
  }
  await client.indices.putIndexTemplate({
    name: names.template,
    index_patterns: [names.pattern],
    priority: 200,
    version: TEMPLATE_VERSION,
    template: {
      settings: indexSettings(await analyzerFilters(client)),
      mappings: memoryMappings(TEXT_ANALYZER),
    },
    _meta: { description: 'lightmem memories: one index per version, behind the alias', alias: names.alias },
  });
}

/**
 * Stemming and accent folding as the SQLite store does (porter, unicode61 without diacritics) when the
 * server has those filters; plain lower-casing otherwise.
 */
async function analyzerFilters(client: Client): Promise<string[]> {
  try {
    await client.indices.analyze({ tokenizer: 'standard', filter: FULL_FILTERS, text: 'probe' });
    return FULL_FILTERS;
  } catch (error) {
    if (statusOf(error) === 400) return BASIC_FILTERS;
    throw error;
  }
}

const aliasesSchema = z.record(
  z.string(),
  z.object({
    aliases: z.record(
      z.string(),
      z.object({ is_write_index: z.boolean().optional(), filter: z.unknown().optional() }),
    ),
  }),
);
type AliasMap = z.infer<typeof aliasesSchema>;

async function getAlias(client: Client, alias: string): Promise<AliasMap | null> {
  try {
    return aliasesSchema.parse(await client.indices.getAlias({ name: alias }));
  } catch (error) {
    if (statusOf(error) === 404) return null;
    throw error;
  }
}

/** The index an alias writes to (its write index, or its only index), or null without the alias. */
export async function writeIndexOf(client: Client, alias: string): Promise<string | null> {
  const found = await getAlias(client, alias);
  if (found === null) return null;
  const indices = Object.entries(found);
  const write = indices.find(([, entry]) => entry.aliases[alias]?.is_write_index === true);
  if (write !== undefined) return write[0];
  if (indices.length === 1 && indices[0] !== undefined) return indices[0][0];
  throw new LightmemError(
    'storage_corrupt',
    `alias ${alias} points at several indices and none is the write index`,
  );
}

const tenantFilterSchema = z.object({
  term: z.object({ tenantId: z.union([z.string(), z.object({ value: z.string() })]) }),
});

/**
 * The per-tenant filtered aliases: created on a tenant's first write in this process (before its
 * documents), on the index the main alias writes to, and remembered. An alias of that name with another
 * filter is refused. A replay that switches the main alias to a new version moves the tenant aliases in the
 * same change; a process that finds one left behind moves it.
 */
export class TenantAliases {
  private readonly ready = new Set<string>();

  constructor(
    private readonly client: Client,
    private readonly names: AliasNames,
  ) {}

  name(tenantId: string): string {
    return this.names.tenantAlias(tenantId);
  }

  async ensure(tenantId: string): Promise<void> {
    if (this.ready.has(tenantId)) return;
    const alias = this.name(tenantId);
    const index = await writeIndexOf(this.client, this.names.alias);
    if (index === null)
      throw new LightmemError('storage_unavailable', `alias ${this.names.alias} is missing`);
    const existing = await getAlias(this.client, alias);
    for (const [, entry] of Object.entries(existing ?? {})) {
      const filter = tenantFilterSchema.safeParse(entry.aliases[alias]?.filter);
      const term = filter.success ? filter.data.term.tenantId : undefined;
      if ((typeof term === 'string' ? term : term?.value) !== tenantId) {
        throw new LightmemError('storage_corrupt', `alias ${alias} does not filter on tenant ${tenantId}`);
      }
    }
    if (existing?.[index] === undefined) {
      // Left on an older index version (the alias moved to a new one): move it, in the same atomic change,
      // so reads never see two versions of the tenant's memories.
      const stale = Object.keys(existing ?? {}).map((old) => ({ remove: { index: old, alias } }));
      await this.client.indices.updateAliases({
        actions: [{ add: { index, alias, filter: { term: { tenantId } } } }, ...stale],
      });
    }
    this.ready.add(tenantId);
  }
}
