import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { apiKeyScopes, type ApiKeyScope } from '../core/api-keys.js';
import type { ApiKeyRecord, TenantDirectory } from '../core/ports/tenant-directory.js';
import { openTenantDirectory } from '../runtime/tenant-directory-setup.js';
import { commonOptions, parse, stringOption } from './args.js';
import { commandConfig } from './context.js';

export const tenantUsage = `lightmem tenant create <tenantId> [--scopes read,write,admin] [--name N] [--json]
  Creates a tenant and its first API key (scopes: admin unless told), printed once: {"tenantId", "apiKey"}.
lightmem tenant list [--json]`;

export const keyUsage = `lightmem key create --tenant T [--scopes read|read,write|admin] [--name N] [--json]
  A new API key of the tenant (scopes default read,write), printed once; only its hash is kept.
lightmem key list [--tenant T] [--json]
lightmem key revoke <keyId> [--tenant T]
  Revoked keys are refused at once (every API replica within 5 s in distributed mode).`;

const keyOptions = {
  ...commonOptions,
  json: { type: 'boolean' },
  tenant: { type: 'string' },
  scopes: { type: 'string' },
  name: { type: 'string' },
} as const;

function scopesOption(value: string | undefined, fallback: readonly ApiKeyScope[]): ApiKeyScope[] {
  if (value === undefined) return [...fallback];
  const scopes = value.split(',').map((scope) => scope.trim());
  for (const scope of scopes) {
    if (!(apiKeyScopes as readonly string[]).includes(scope))
      throw new InvalidInputError(`--scopes takes ${apiKeyScopes.join(', ')} (got ${scope})`, 'scopes');
  }
  return scopes as ApiKeyScope[];
}

async function withDirectory<T>(
  values: Record<string, string | boolean | undefined>,
  run: (directory: TenantDirectory) => Promise<T>,
): Promise<T> {
  const directory = await openTenantDirectory(commandConfig(values), systemClock);
  try {
    return await run(directory);
  } finally {
    await directory.close();
  }
}

function keyLine(key: ApiKeyRecord): string {
  const state = key.revokedAt === null ? 'active' : `revoked ${new Date(key.revokedAt).toISOString()}`;
  return `${key.keyId}  ${key.tenantId}  ${key.scopes.join(',')}  ${state}  ${key.name ?? ''}`.trimEnd();
}

export async function tenantCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, keyOptions);
  const [action, tenantId] = positionals;
  if (values['help'] === true || action === undefined) {
    console.log(tenantUsage);
    return values['help'] === true ? 0 : 1;
  }
  const json = values['json'] === true;
  if (action === 'create') {
    if (tenantId === undefined)
      throw new InvalidInputError(`tenant create needs an id\n${tenantUsage}`, 'tenantId');
    const scopes = scopesOption(stringOption(values, 'scopes'), ['admin']);
    const issued = await withDirectory(values, async (directory) => {
      await directory.createTenant(tenantId);
      return directory.createKey({ tenantId, scopes, name: stringOption(values, 'name') ?? 'first key' });
    });
    if (json)
      console.log(JSON.stringify({ tenantId, apiKey: issued.apiKey, keyId: issued.key.keyId, scopes }));
    else
      console.log(
        `tenant ${tenantId} created; its ${scopes.join(',')} API key (shown once, keep it):\n${issued.apiKey}`,
      );
    return 0;
  }
  if (action === 'list') {
    const tenants = await withDirectory(values, (directory) => directory.tenants());
    if (json) console.log(JSON.stringify({ tenants }));
    else
      for (const tenant of tenants)
        console.log(`${tenant.tenantId}  ${new Date(tenant.createdAt).toISOString()}`);
    return 0;
  }
  throw new InvalidInputError(`unknown tenant command ${action}\n${tenantUsage}`, 'command');
}

export async function keyCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, keyOptions);
  const [action, keyId] = positionals;
  if (values['help'] === true || action === undefined) {
    console.log(keyUsage);
    return values['help'] === true ? 0 : 1;
  }
  const json = values['json'] === true;
  const tenantId = stringOption(values, 'tenant');
  if (action === 'create') {
    if (tenantId === undefined) throw new InvalidInputError('key create needs --tenant', 'tenant');
    const scopes = scopesOption(stringOption(values, 'scopes'), ['read', 'write']);
    const name = stringOption(values, 'name');
    const issued = await withDirectory(values, (directory) =>
      directory.createKey({ tenantId, scopes, ...(name === undefined ? {} : { name }) }),
    );
    if (json)
      console.log(JSON.stringify({ tenantId, apiKey: issued.apiKey, keyId: issued.key.keyId, scopes }));
    else
      console.log(
        `API key ${issued.key.keyId} of ${tenantId} (${scopes.join(',')}; shown once):\n${issued.apiKey}`,
      );
    return 0;
  }
  if (action === 'list') {
    const keys = await withDirectory(values, (directory) => directory.keys(tenantId));
    if (json) console.log(JSON.stringify({ keys }));
    else for (const key of keys) console.log(keyLine(key));
    return 0;
  }
  if (action === 'revoke') {
    if (keyId === undefined) throw new InvalidInputError(`key revoke needs a key id\n${keyUsage}`, 'keyId');
    const key = await withDirectory(values, (directory) => directory.revokeKey(keyId, tenantId));
    if (json) console.log(JSON.stringify({ key }));
    else console.log(`revoked ${keyLine(key)}`);
    return 0;
  }
  throw new InvalidInputError(`unknown key command ${action}\n${keyUsage}`, 'command');
}
