import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InfraError } from '../lib/infra-error.js';
import { ensureDirs, infraLayout, type InfraLayout } from '../lib/layout.js';
import { runChecked } from '../lib/processes.js';
import { installFromWheelhouse, once, pipEnv } from '../lib/python.js';
import type { InfraTool } from './tool.js';

export const schemathesisVersion = '4.32.5';

/**
 * Its dependencies, pinned to the versions it was tested with (Python 3.11), so a new release of one of
 * them cannot change what the fuzz test runs.
 */
const constraints = [
  'anyio==4.16.0',
  'certifi==2026.10.19.post1',
  'charset-normalizer==3.5.3',
  'click==8.5.1',
  'graphql-core==3.3.2',
  'harfile==0.6.0',
  'hypothesis==6.170.17',
  'hypothesis-graphql==0.13.5',
  'idna==3.20',
  'iniconfig==2.3.1',
  'jsonschema-rs==0.60.3',
  'markdown-it-py==4.3.0',
  'markupsafe==3.0.4',
  'mdurl==0.1.2',
  'packaging==26.4',
  'pluggy==1.7.0',
  'pygments==2.21.0',
  'pyrate-limiter==4.5.1',
  'pytest==9.2.0',
  'pyyaml==6.0.4',
  'requests==2.34.2',
  'rich==15.0.0',
  'sortedcontainers==2.4.0',
  'typing-extensions==4.16.0',
  'urllib3==2.8.0',
  'werkzeug==3.1.9',
];

function home(layout: InfraLayout): string {
  return join(layout.installs, `schemathesis-${schemathesisVersion}`);
}

function executable(layout: InfraLayout): string {
  return join(home(layout), 'venv', 'bin', 'st');
}

/**
 * Schemathesis (a property-based fuzzer driven by an OpenAPI document) in its own venv. Its wheels (no
 * sdist: nothing is compiled) are downloaded once into downloads/pypi/schemathesis-<v>/ and the venv is
 * installed from them without the index; the venv counts only once its `.complete` marker is written after
 * `st --version` answered, so an interrupted install is redone. Returns the `st` executable.
 */
function install(layout: InfraLayout, say: (message: string) => void): string {
  const dir = home(layout);
  const marker = join(dir, '.complete');
  const st = executable(layout);
  if (existsSync(marker) && existsSync(st)) return st;
  const venv = join(dir, 'venv');
  const python = join(venv, 'bin', 'python');
  rmSync(venv, { recursive: true, force: true });
  rmSync(marker, { force: true });
  ensureDirs(dir);
  const env = pipEnv(layout);
  const started = Date.now();
  runChecked('python3', ['-m', 'venv', venv], 'creating a Python venv (is python3 with venv installed?)');

  const wheelhouse = join(layout.downloads, 'pypi', `schemathesis-${schemathesisVersion}`);
  once(wheelhouse, (partial) => {
    say(`downloading schemathesis ${schemathesisVersion} and its dependencies from PyPI`);
    const pins = join(partial, 'constraints.txt');
    writeFileSync(pins, `${constraints.join('\n')}\n`);
    runChecked(
      python,
      [
        '-m',
        'pip',
        'download',
        '--only-binary',
        ':all:',
        '-c',
        pins,
        '-d',
        partial,
        `schemathesis==${schemathesisVersion}`,
      ],
      'downloading schemathesis from PyPI (is PyPI reachable?)',
      { env },
    );
  });
  installFromWheelhouse(python, wheelhouse, `schemathesis==${schemathesisVersion}`, 'schemathesis', env);
  const version = runChecked(st, ['--version'], 'running the installed schemathesis');
  if (!version.includes(schemathesisVersion))
    throw new InfraError(`st --version answered ${version.trim()}, expected ${schemathesisVersion}`);
  writeFileSync(marker, `${new Date().toISOString()}\n`);
  say(`schemathesis ${schemathesisVersion} installed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return st;
}

export const schemathesisTool: InfraTool = {
  name: 'schemathesis',
  summary: `schemathesis ${schemathesisVersion} (PyPI), an OpenAPI fuzzer`,
  install: async (layout, say) => install(layout, say),
};

/**
 * The `st` executable of schemathesis, installed into the infra cache first if it is not there yet (under
 * `.cache/infra/`, or LIGHTMEM_INFRA_CACHE): tests call this rather than rely on `infra install`.
 */
export async function schemathesisExecutable(
  say: (message: string) => void = (message) => process.stderr.write(`schemathesis: ${message}\n`),
): Promise<string> {
  return schemathesisTool.install(infraLayout(), say);
}
