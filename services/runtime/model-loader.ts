import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LightmemConfig } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { RuntimeOptions } from './runtime.js';
import type { AttentionModel } from '../core/ports/segmenter.js';
import type { TokenScorer } from '../core/ports/token-scorer.js';
import { LightmemError, errorMessage } from '../core/errors.js';
import { OnnxEmbedder } from '../adapters/onnx/onnx-embedder.js';
import { OnnxAttentionModel } from '../adapters/onnx/onnx-attention-model.js';
import { OnnxTokenScorer } from '../adapters/onnx/onnx-token-scorer.js';
import { manifestFileName, modelFileName, tokenizerFileName } from '../models/model-manifest.js';
import type { FetchProgress } from '../models/model-fetcher.js';
import { fileSha256, readManifest } from '../adapters/onnx/model-folder.js';

export interface LoadedModels {
  readonly embedder: OnnxEmbedder | null;
  readonly attention: OnnxAttentionModel | null;
  /** The LLMLingua-2 scorer of the compressor (`models.compressor`); null: the built-in heuristic scorer. */
  readonly scorer: OnnxTokenScorer | null;
  /** What is off and how to turn it on, for logs and `lightmem stats`. */
  readonly warnings: readonly string[];
}

/**
 * Loads the configured embedder (and its attention, for the segmenter) and the compressor's token
 * classifier, if one is configured. When the embedder is not installed and auto-fetch is on, fetches it
 * first, trying the sources in order. Nothing here fails the start-up: a missing model turns features off
 * (or falls back to a built-in), and the warnings say which ones and how to install the model.
 */
export async function loadModels(
  config: LightmemConfig,
  logger: Logger,
  onProgress?: (progress: FetchProgress) => void,
): Promise<LoadedModels> {
  const encoder = await loadEncoder(config, logger, onProgress);
  const compressor = await loadCompressorModel(config);
  return {
    ...encoder,
    scorer: compressor.scorer,
    warnings: [...encoder.warnings, ...compressor.warnings],
  };
}

/**
 * The compressor's LLMLingua-2 token classifier (`models.compressor`, a folder under the models dir or a
 * path). Nothing configured: null, no warning (the built-in scorer, as before). Configured but missing or
 * unusable: null and a warning; there is no source to fetch LLMLingua-2 weights from, so none is fetched.
 */
export async function loadCompressorModel(
  config: LightmemConfig,
): Promise<{ readonly scorer: OnnxTokenScorer | null; readonly warnings: readonly string[] }> {
  const name = config.models.compressor;
  if (name === undefined || name === 'none') return { scorer: null, warnings: [] };
  const modelsDir = config.models.dir ?? join(config.dataDir, 'models');
  const folder = resolve(modelsDir, name);
  try {
    const scorer = await OnnxTokenScorer.load(
      folder,
      config.models.threads === undefined ? {} : { threads: config.models.threads },
    );
    return { scorer, warnings: [] };
  } catch (error) {
    // A missing file's own message says to run `lightmem models fetch`, which cannot fetch this model.
    const problem =
      error instanceof LightmemError && error.code === 'not_found'
        ? existsSync(folder)
          ? `incomplete: ${errorMessage(error).split(';')[0] ?? ''}`
          : 'not installed'
        : errorMessage(error);
    return {
      scorer: null,
      warnings: [
        `compressor model ${name} is not usable (${problem}): compression uses the built-in ` +
          `heuristic scorer; put an LLMLingua-2 ONNX export (${modelFileName} + ${tokenizerFileName} + ` +
          `${manifestFileName} with kind token-classifier) in ${folder}`,
      ],
    };
  }
}

async function loadEncoder(
  config: LightmemConfig,
  logger: Logger,
  onProgress?: (progress: FetchProgress) => void,
): Promise<Omit<LoadedModels, 'scorer'>> {
  const name = config.models.embedder;
  if (name === 'none') {
    return {
      embedder: null,
      attention: null,
      warnings: [
        'embedder disabled (models.embedder = none): search is lexical only, topic segmentation is off',
      ],
    };
  }
  const modelsDir = config.models.dir ?? join(config.dataDir, 'models');
  const folder = join(modelsDir, name);
  const off = `semantic search and topic segmentation are off; run \`lightmem models fetch --model ${name}\` (or --source maven)`;
  // The files as the manifest records them, by their cached hashes: a start-up with the model installed
  // hashes nothing (the fetcher, which hashes every file, is only loaded when this fails).
  const installed = await installedModel(folder);
  if (!installed.ok) {
    if (!config.models.autoFetch) {
      return {
        embedder: null,
        attention: null,
        warnings: [
          `embedder ${name} is not installed in ${modelsDir} (${installed.problem ?? 'not installed'}): ${off}`,
        ],
      };
    }
    logger.info('fetching the embedder on first use', {
      model: name,
      sources: config.models.sources.join(','),
    });
    try {
      const { fetchFirstAvailable } = await import('../models/model-fetcher.js');
      const result = await fetchFirstAvailable({
        name,
        modelsDir,
        sources: config.models.sources,
        onProgress,
      });
      for (const failure of result.failures)
        logger.warn('model source failed', { source: failure.source, error: failure.message });
    } catch (error) {
      return {
        embedder: null,
        attention: null,
        warnings: [`embedder ${name} could not be fetched (${errorMessage(error)}): ${off}`],
      };
    }
  }
  let embedder: OnnxEmbedder;
  try {
    embedder = await OnnxEmbedder.load(folder, {
      batchTokens: config.models.embedBatchTokens,
      ...(config.models.threads === undefined ? {} : { threads: config.models.threads }),
    });
  } catch (error) {
    return {
      embedder: null,
      attention: null,
      warnings: [`embedder ${name} failed to load (${errorMessage(error)}): ${off}`],
    };
  }
  if (!config.models.attention)
    return {
      embedder,
      attention: null,
      warnings: ['attention half of topic segmentation disabled (models.attention = false)'],
    };
  try {
    const attention = await OnnxAttentionModel.load(folder, {
      lastLayers: config.segmenter.attentionLayers,
      ...(config.models.threads === undefined ? {} : { threads: config.models.threads }),
    });
    return { embedder, attention, warnings: [] };
  } catch (error) {
    return {
      embedder,
      attention: null,
      warnings: [
        `attention of ${name} unavailable (${errorMessage(error)}): topic boundaries use similarity drops only`,
      ],
    };
  }
}

/**
 * Whether `folder` holds the embedder as its manifest records it (each file there, with its recorded
 * sha256), by the hashes `fileSha256` keeps: what `checkModelDir` checks, without hashing each start.
 */
async function installedModel(folder: string): Promise<{ ok: boolean; problem?: string }> {
  if (!existsSync(folder)) return { ok: false, problem: 'not installed' };
  if (!existsSync(join(folder, manifestFileName))) return { ok: false, problem: `no ${manifestFileName}` };
  try {
    const manifest = await readManifest(folder, 'embedder');
    for (const file of [modelFileName, tokenizerFileName])
      if (manifest.files[file] === undefined)
        return { ok: false, problem: `${manifestFileName} lists no ${file}` };
    for (const [file, expected] of Object.entries(manifest.files)) {
      if (!existsSync(join(folder, file))) return { ok: false, problem: `${file} is missing` };
      const actual = await fileSha256(join(folder, file));
      if (actual !== expected) return { ok: false, problem: `${file} does not match its sha256 (${actual})` };
    }
    return { ok: true };
  } catch (error) {
    return { ok: false, problem: errorMessage(error) };
  }
}

export interface RuntimeModels {
  readonly embedder: Embedder | null;
  readonly attention: AttentionModel | null;
  readonly scorer: TokenScorer | null;
  readonly warnings: readonly string[];
}

/**
 * The models a runtime uses: the ones a test hands in, or the configured ones (fetched on first use),
 * with the function that releases them.
 */
export async function runtimeModels(
  config: LightmemConfig,
  options: Pick<RuntimeOptions, 'logger' | 'models' | 'onFetchProgress'>,
): Promise<{ models: RuntimeModels; closeModels: () => Promise<void> }> {
  if (options.models !== undefined) {
    return {
      models: {
        embedder: options.models.embedder,
        attention: options.models.attention ?? null,
        scorer: options.models.scorer ?? null,
        warnings: [],
      },
      closeModels: () => Promise.resolve(),
    };
  }
  const loaded = await loadModels(config, options.logger, options.onFetchProgress);
  return {
    models: loaded,
    closeModels: async () => {
      await loaded.embedder?.close();
      await loaded.attention?.close();
      await loaded.scorer?.close();
    },
  };
}
