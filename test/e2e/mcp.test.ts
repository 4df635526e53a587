import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { ApiKeyScope } from '../../services/core/api-keys.js';
import { SqliteTenantDirectory } from '../../services/adapters/sqlite/sqlite-tenant-directory.js';
import type { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { repoRoot, tempDir } from '../support/cli.js';
import { runCliInProcess } from '../support/in-process-cli.js';
import { openRuntime } from '../support/embedded.js';
import { serveInProcess, type InProcessApi } from '../support/in-process-api.js';

/**
 * The MCP server with the SDK's own client, over both transports: stdio (`lightmem mcp`, a real process)
 * and streamable HTTP (`/mcp` of the HTTP API). Every tool, bad arguments as tool errors with our code and
 * field, keys refused as the MCP authorization spec says, and a tenant seeing nothing of another.
 */

type ToolResult = Awaited<ReturnType<Client['callTool']>>;

function turns(userId: string, conversationId: string): Record<string, unknown>[] {
  const said = [
    'My account number changed, the new one is ZX-9917 and the branch moved to Lisbon.',
    'Please send the replacement card to the Lisbon branch, not to my home address.',
    'Noted: the card goes to the Lisbon branch within five business days.',
  ];
  return said.map((text, i) => ({
    userId,
    conversationId,
    turnId: `t${i}`,
    role: i === 2 ? 'agent' : 'customer',
    speaker: i === 2 ? 'agent-7' : userId,
    text,
    occurredAt: `2024-05-01T09:0${i}:00Z`,
  }));
}

function structured(result: ToolResult): Record<string, unknown> {
  assert.notEqual(result.isError, true, JSON.stringify(result.content));
  return result.structuredContent as Record<string, unknown>;
}

function text(result: ToolResult): string {
  const content = result.content as { type: string; text?: string }[];
  return content.map((c) => c.text ?? '').join('\n');
}

/** A tool error: our `{error: {code, field, …}}`. */
function toolError(result: ToolResult): { code: string; field: string | null; message: string } {
  assert.equal(result.isError, true, `expected a tool error, got ${text(result)}`);
  const body = JSON.parse(text(result)) as { error: { code: string; field: string | null; message: string } };
  return body.error;
}

async function connected(transport: StdioClientTransport | StreamableHTTPClientTransport): Promise<Client> {
  const client = new Client({ name: 'lightmem-test', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

/** What every transport must do for a key of tenant acme with read and write. */
async function toolsWork(client: Client): Promise<string> {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), [
    'add_turns',
    'consolidate',
    'forget_user',
    'get_memory',
    'memory_history',
    'search_memory',
  ]);
  const search = tools.find((t) => t.name === 'search_memory');
  assert.deepEqual(search?.inputSchema.required?.slice().sort(), ['query', 'userId']);

  const added = structured(
    await client.callTool({
      name: 'add_turns',
      arguments: { turns: turns('alice', 'call-1'), endSession: true, wait: true },
    }),
  );
  assert.equal(added['accepted'], 3);
  assert.equal(added['processed'], true);
  // The same turns again: duplicates, nothing new.
  const again = structured(
    await client.callTool({ name: 'add_turns', arguments: { turns: turns('alice', 'call-1') } }),
  );
  assert.equal(again['duplicates'], 3);

  const found = await client.callTool({
    name: 'search_memory',
    arguments: { userId: 'alice', query: 'where does the replacement card go?', limit: 5 },
  });
  const results = structured(found)['results'] as { id: string; text: string; sourceTurnIds: string[] }[];
  assert.ok(results.length > 0, text(found));
  const hit = results.find((r) => r.text.includes('Lisbon'));
  assert.ok(hit !== undefined, text(found));
  // The text names each memory's id and its source turns.
  assert.match(text(found), new RegExp(`\\[${hit.id}\\]`));
  assert.match(text(found), /sources: .*t[0-2]/);

  const memory = structured(
    await client.callTool({ name: 'get_memory', arguments: { userId: 'alice', id: hit.id } }),
  );
  assert.equal(memory['id'], hit.id);
  assert.deepEqual(memory['sourceTurnIds'], hit.sourceTurnIds);
  const history = structured(
    await client.callTool({ name: 'memory_history', arguments: { userId: 'alice', id: hit.id } }),
  );
  assert.ok(Array.isArray(history['versions']));

  const consolidated = structured(
    await client.callTool({ name: 'consolidate', arguments: { userId: 'alice', dryRun: true } }),
  );
  assert.equal(consolidated['dryRun'], true);
  assert.equal(consolidated['userId'], 'alice');

  // Bad arguments: our code and the field, as the HTTP API says them.
  const badLimit = toolError(
    await client.callTool({ name: 'search_memory', arguments: { userId: 'alice', query: 'card', limit: 0 } }),
  );
  assert.deepEqual([badLimit.code, badLimit.field], ['invalid_input', 'limit']);
  const noQuery = toolError(await client.callTool({ name: 'search_memory', arguments: { userId: 'alice' } }));
  assert.deepEqual([noQuery.code, noQuery.field], ['invalid_input', 'query']);
  const badTurn = structured(
    await client.callTool({ name: 'add_turns', arguments: { turns: [{ userId: 'alice', text: 'no ids' }] } }),
  );
  assert.equal(badTurn['accepted'], 0);
  assert.equal((badTurn['rejected'] as unknown[]).length, 1);
  const missing = toolError(
    await client.callTool({ name: 'get_memory', arguments: { userId: 'alice', id: 'nope' } }),
  );
  assert.equal(missing.code, 'not_found');
  const unknown = toolError(await client.callTool({ name: 'drop_tables', arguments: {} }));
  assert.deepEqual([unknown.code, unknown.field], ['not_found', 'name']);
  return hit.id;
}

/** A key of another tenant finds nothing of acme's alice through any tool, and erases nothing of hers. */
async function tenantSeesNothing(client: Client, aliceMemory: string): Promise<void> {
  const found = structured(
    await client.callTool({
      name: 'search_memory',
      arguments: { userId: 'alice', query: 'Lisbon card ZX-9917' },
    }),
  );
  assert.deepEqual(found['results'], []);
  for (const name of ['get_memory', 'memory_history']) {
    const refused = toolError(
      await client.callTool({ name, arguments: { userId: 'alice', id: aliceMemory } }),
    );
    assert.equal(refused.code, 'not_found');
  }
  const named = toolError(
    await client.callTool({
      name: 'search_memory',
      arguments: { tenantId: 'acme', userId: 'alice', query: 'Lisbon' },
    }),
  );
  assert.equal(named.code, 'forbidden');
  // Erasing "alice" erases this tenant's alice (none), never acme's.
  structured(await client.callTool({ name: 'forget_user', arguments: { userId: 'alice' } }));
  const nothing = structured(
    await client.callTool({ name: 'consolidate', arguments: { userId: 'alice', dryRun: true } }),
  );
  assert.equal(nothing['sources'], 0);
}

async function stillThere(client: Client, id: string): Promise<void> {
  const memory = structured(
    await client.callTool({ name: 'get_memory', arguments: { userId: 'alice', id } }),
  );
  assert.equal(memory['id'], id);
}

describe('MCP over stdio (lightmem mcp)', () => {
  const dir = tempDir('mcp-stdio');
  const keys: Record<string, string> = {};
  const clients: Client[] = [];

  before(async () => {
    const directory = SqliteTenantDirectory.open(join(dir.path, 'tenants.db'));
    const issue = async (tenantId: string, scopes: ApiKeyScope[]): Promise<string> => {
      if ((await directory.tenant(tenantId)) === undefined) await directory.createTenant(tenantId);
      return (await directory.createKey({ tenantId, scopes })).apiKey;
    };
    keys['acme'] = await issue('acme', ['read', 'write']);
    keys['globex'] = await issue('globex', ['admin']);
    await directory.close();
  });
  after(async () => {
    for (const client of clients) await client.close();
    dir.remove();
  });

  function spawned(apiKey: string): StdioClientTransport {
    return new StdioClientTransport({
      command: process.execPath,
      args: ['--import', 'tsx', join(repoRoot, 'scripts/dev-cli.ts'), 'mcp', '--data-dir', dir.path],
      cwd: repoRoot,
      env: {
        ...(process.env as Record<string, string>),
        LIGHTMEM_EMBEDDER: 'none',
        LIGHTMEM_API_KEY: apiKey,
      },
      stderr: 'pipe',
    });
  }

  it('serves every tool to a key, in its tenant and scopes, and another tenant sees nothing', async () => {
    const acme = await connected(spawned(keys['acme'] ?? ''));
    clients.push(acme);
    const id = await toolsWork(acme);
    // read and write, not admin: erasing is refused as the HTTP API refuses it.
    const erase = toolError(await acme.callTool({ name: 'forget_user', arguments: { userId: 'alice' } }));
    assert.equal(erase.code, 'forbidden');

    const globex = await connected(spawned(keys['globex'] ?? ''));
    clients.push(globex);
    await tenantSeesNothing(globex, id);
    await stillThere(acme, id);
  });

  it('refuses to start with a wrong key, or with no key and no --tenant', async () => {
    const wrong = await runCliInProcess(['mcp', '--data-dir', dir.path], {
      LIGHTMEM_EMBEDDER: 'none',
      LIGHTMEM_API_KEY: `${keys['acme']?.slice(0, -4) ?? ''}0000`,
    });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /LIGHTMEM_API_KEY: LIGHTMEM_API_KEY is not valid or was revoked/);
    const none = await runCliInProcess(['mcp', '--data-dir', dir.path], {
      LIGHTMEM_EMBEDDER: 'none',
      LIGHTMEM_API_KEY: '',
    });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /an API key is required/);
  });
});

describe('MCP over streamable HTTP (/mcp)', () => {
  const dir = tempDir('mcp-http');
  let runtime: EmbeddedRuntime;
  let api: InProcessApi;
  const clients: Client[] = [];

  before(async () => {
    runtime = await openRuntime(dir.path);
    api = await serveInProcess(runtime);
  });
  after(async () => {
    for (const client of clients) await client.close();
    await api.close();
    await runtime.close();
    dir.remove();
  });

  async function key(tenantId: string, scopes: ApiKeyScope[]): Promise<string> {
    if ((await api.directory.tenant(tenantId)) === undefined) await api.directory.createTenant(tenantId);
    return (await api.directory.createKey({ tenantId, scopes })).apiKey;
  }

  function over(apiKey: string): StreamableHTTPClientTransport {
    return new StreamableHTTPClientTransport(new URL(`${api.base}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${apiKey}` } },
    });
  }

  it('serves every tool to a key, and another tenant sees nothing', async () => {
    const acme = await connected(over(await key('acme', ['read', 'write'])));
    clients.push(acme);
    const id = await toolsWork(acme);
    const globex = await connected(over(await key('globex', ['admin'])));
    clients.push(globex);
    await tenantSeesNothing(globex, id);
    await stillThere(acme, id);
  });

  const call = (name: string) => ({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name, arguments: { userId: 'alice' } },
  });
  const post = (body: unknown, headers: Record<string, string>) =>
    fetch(`${api.base}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body: JSON.stringify(body),
    });

  it('answers 401 with the resource metadata for a missing or wrong key', async () => {
    for (const headers of [{}, { authorization: 'Bearer lm_wrong' }]) {
      const answer = await post(call('search_memory'), headers);
      assert.equal(answer.status, 401);
      const challenge = answer.headers.get('www-authenticate') ?? '';
      assert.match(
        challenge,
        /^Bearer resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"$/,
      );
    }
    const metadata = (await (await fetch(`${api.base}/.well-known/oauth-protected-resource/mcp`)).json()) as {
      resource: string;
      bearer_methods_supported: string[];
    };
    assert.equal(metadata.resource, `${api.base}/mcp`);
    assert.deepEqual(metadata.bearer_methods_supported, ['header']);
    // The SDK's client gets the 401 too.
    await assert.rejects(connected(over('lm_wrong')), /401|Unauthorized/i);
  });

  it('answers 403 insufficient_scope when a tool needs a scope the key lacks', async () => {
    const readOnly = await key('acme', ['read']);
    const answer = await post(call('add_turns'), { authorization: `Bearer ${readOnly}` });
    assert.equal(answer.status, 403);
    assert.match(answer.headers.get('www-authenticate') ?? '', /error="insufficient_scope", scope="write"/);
    const erase = await post(call('forget_user'), { authorization: `Bearer ${readOnly}` });
    assert.match(erase.headers.get('www-authenticate') ?? '', /scope="admin"/);
    // A read is allowed.
    const client = await connected(over(readOnly));
    clients.push(client);
    structured(
      await client.callTool({ name: 'search_memory', arguments: { userId: 'alice', query: 'card' } }),
    );
    const get = await fetch(`${api.base}/mcp`, { headers: { authorization: `Bearer ${readOnly}` } });
    assert.equal(get.status, 405);
  });
});
