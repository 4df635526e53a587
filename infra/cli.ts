/**
 * `npm run infra:up | infra:down | infra:status [-- <server>…]`: fetches (cached under .cache/infra),
 * configures, starts, health-checks and stops the real servers of distributed mode on this machine.
 * `tsx infra/cli.ts install <server or tool>…` only fetches; tools (infra/tools/) are never started.
 * Idempotent: `up` leaves running servers alone, `down` of a stopped server is a no-op.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { InfraError } from './lib/infra-error.js';
import { ensureDirs, infraLayout, type InfraLayout } from './lib/layout.js';
import {
  portOwner,
  portTaken,
  removeFile,
  runningPid,
  startDetached,
  stopProcess,
  tail,
} from './lib/processes.js';
import type { ServerContext, ServerSpec } from './lib/server-spec.js';
import { allServers } from './servers/index.js';
import { allTools } from './tools/index.js';

const say = (message: string): void => {
  process.stderr.write(`${message}\n`);
};

function contextOf(layout: InfraLayout, spec: ServerSpec): ServerContext {
  return { layout, paths: layout.server(spec.name), say: (m) => say(`  ${spec.name}: ${m}`) };
}

function select(names: readonly string[]): ServerSpec[] {
  const servers = allServers();
  if (names.length === 0) return servers;
  const unknown = names.filter((name) => !servers.some((s) => s.name === name));
  if (unknown.length > 0) {
    throw new InfraError(
      `unknown server ${unknown.join(', ')}; known: ${servers.map((s) => s.name).join(', ')}`,
    );
  }
  // Dependencies come along, in start order.
  const wanted = new Set(names);
  for (const spec of [...servers].reverse())
    if (wanted.has(spec.name)) for (const d of spec.dependsOn) wanted.add(d);
  return servers.filter((s) => wanted.has(s.name));
}

async function up(layout: InfraLayout, spec: ServerSpec): Promise<void> {
  const context = contextOf(layout, spec);
  const { paths } = context;
  ensureDirs(paths.data, paths.logs, paths.config);
  const started = Date.now();
  let pid = runningPid(paths.pidFile);
  if (pid !== null && (await spec.healthy(context))) {
    say(`${spec.name}: already up (pid ${pid}) at ${spec.endpoint}`);
    return;
  }
  if (pid === null) {
    removeFile(paths.pidFile);
    for (const port of spec.ports) {
      if (await portTaken(port)) {
        throw new InfraError(
          `${spec.name}: port ${port} is taken by ${portOwner(port)}. Stop it, or move ${spec.name} with its LIGHTMEM_INFRA_*_PORT variable (infra/endpoints.ts).`,
        );
      }
    }
    await spec.install(context);
    const command = await spec.prepare(context);
    pid = startDetached(command, paths.logFile, paths.pidFile);
    say(`${spec.name}: starting (pid ${pid}), log ${paths.logFile}`);
  } else {
    say(`${spec.name}: running (pid ${pid}) but not healthy yet; waiting`);
  }
  const deadline = Date.now() + spec.startTimeoutMs;
  for (;;) {
    if (await spec.healthy(context)) break;
    if (runningPid(paths.pidFile) === null) {
      throw new InfraError(
        `${spec.name}: the process exited during start-up. Last lines of ${paths.logFile}:\n${tail(paths.logFile, 30)}`,
      );
    }
    if (Date.now() > deadline) {
      throw new InfraError(
        `${spec.name}: not healthy after ${spec.startTimeoutMs / 1000} s (left running, pid ${pid}). Last lines of ${paths.logFile}:\n${tail(paths.logFile, 30)}`,
      );
    }
    await sleep(250);
  }
  say(
    `${spec.name}: up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${spec.endpoint} (${spec.summary})`,
  );
}

async function down(layout: InfraLayout, spec: ServerSpec): Promise<void> {
  const paths = layout.server(spec.name);
  const pid = runningPid(paths.pidFile);
  if (pid === null) {
    removeFile(paths.pidFile);
    say(`${spec.name}: not running`);
    return;
  }
  const started = Date.now();
  const how = await stopProcess(pid, spec.stopGraceMs);
  removeFile(paths.pidFile);
  say(
    `${spec.name}: ${how === 'stopped' ? 'stopped' : `killed after ${spec.stopGraceMs / 1000} s grace`} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
}

async function status(layout: InfraLayout, specs: readonly ServerSpec[]): Promise<boolean> {
  let allUp = true;
  const rows: string[][] = [['server', 'state', 'pid', 'endpoint', 'log']];
  for (const spec of specs) {
    const context = contextOf(layout, spec);
    const pid = runningPid(context.paths.pidFile);
    const healthy = pid !== null && (await spec.healthy(context));
    if (!healthy) allUp = false;
    rows.push([
      spec.name,
      pid === null ? 'down' : healthy ? 'up' : 'unhealthy',
      pid === null ? '-' : String(pid),
      spec.endpoint,
      context.paths.logFile,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows)
    console.log(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  return allUp;
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...names] = argv;
  const layout = infraLayout();
  if (command === 'up') {
    for (const spec of select(names)) await up(layout, spec);
    return 0;
  }
  if (command === 'down') {
    for (const spec of select(names).reverse()) await down(layout, spec);
    return 0;
  }
  if (command === 'status') return (await status(layout, select(names))) ? 0 : 1;
  if (command === 'install') {
    // Tools (programs tests run, such as the fuzzer) install by name too; they are never started.
    const tools = allTools().filter((tool) => names.includes(tool.name));
    for (const tool of tools) {
      const path = await tool.install(layout, (m) => say(`  ${tool.name}: ${m}`));
      say(`${tool.name}: installed (${tool.summary}) at ${path}`);
    }
    const serverNames = names.filter((name) => !tools.some((tool) => tool.name === name));
    if (tools.length > 0 && serverNames.length === 0) return 0;
    for (const spec of select(serverNames)) {
      const context = contextOf(layout, spec);
      ensureDirs(context.paths.data, context.paths.logs, context.paths.config);
      await spec.install(context);
      say(`${spec.name}: installed (${spec.summary})`);
    }
    return 0;
  }
  say(
    'usage: tsx infra/cli.ts up|down|status|install [server…]   (servers: ' +
      allServers()
        .map((s) => s.name)
        .join(', ') +
      '; install also takes tools: ' +
      allTools()
        .map((t) => t.name)
        .join(', ') +
      ')',
  );
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    say(
      error instanceof InfraError
        ? `infra: ${error.message}`
        : `infra: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
    process.exitCode = 1;
  },
);
