import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../../services/runtime/load-config.js';
import { loadModels } from '../../services/runtime/model-loader.js';
import { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { stderrLogger } from '../../services/runtime/stderr-logger.js';
import { systemClock } from '../../services/core/ports/clock.js';
import { writeTinyEmbedderFolder } from '../support/tiny-onnx.js';
import { tempDir } from '../support/cli.js';

const logger = stderrLogger('silent');

describe('loading the configured models', () => {
  const dir = tempDir('models');
  after(() => dir.remove());

  it('embedder none: nothing loaded, and the warning says what is off', async () => {
    const config = loadConfig({ env: { LIGHTMEM_EMBEDDER: 'none' }, overrides: { dataDir: dir.path } });
    const loaded = await loadModels(config, logger);
    assert.equal(loaded.embedder, null);
    assert.match(loaded.warnings.join('\n'), /lexical only/);
  });

  it('no compressor model configured: the built-in scorer, no warning; configured but missing: a warning', async () => {
    const plain = loadConfig({ env: { LIGHTMEM_EMBEDDER: 'none' }, overrides: { dataDir: dir.path } });
    assert.equal(plain.models.compressor, undefined);
    const loaded = await loadModels(plain, logger);
    assert.equal(loaded.scorer, null);
    assert.doesNotMatch(loaded.warnings.join('\n'), /compressor/);
    const missing = loadConfig({
      env: { LIGHTMEM_EMBEDDER: 'none' },
      overrides: { dataDir: dir.path, models: { compressor: 'llmlingua-2' } },
    });
    const fallback = await loadModels(missing, logger);
    assert.equal(fallback.scorer, null);
    assert.match(
      fallback.warnings.join('\n'),
      /compressor model llmlingua-2 .*built-in heuristic scorer; put an LLMLingua-2 ONNX export/,
    );
  });

  it('not installed and auto-fetch off: says how to fetch it', async () => {
    const config = loadConfig({ env: { LIGHTMEM_AUTO_FETCH: '0' }, overrides: { dataDir: dir.path } });
    assert.equal(config.models.dir, join(dir.path, 'models'));
    const loaded = await loadModels(config, logger);
    assert.equal(loaded.embedder, null);
    assert.match(loaded.warnings.join('\n'), /bge-small-en-v1\.5-q is not installed.*lightmem models fetch/);
  });

  it('an installed embedder without attention outputs: similarity segmentation, with a warning', async () => {
    const modelsDir = join(dir.path, 'installed');
    await mkdir(modelsDir, { recursive: true });
    const tiny = await writeTinyEmbedderFolder();
    await rename(tiny, join(modelsDir, 'tiny'));
    const config = loadConfig({
      env: { LIGHTMEM_MODELS_DIR: modelsDir, LIGHTMEM_EMBEDDER: 'tiny', LIGHTMEM_AUTO_FETCH: '0' },
      overrides: { dataDir: join(dir.path, 'data') },
    });
    const runtime = await EmbeddedRuntime.open(config, { logger, clock: systemClock });
    try {
      assert.match(runtime.components.embedder?.id ?? '', /@[0-9a-f]{12}$/);
      assert.match(runtime.components.segmenter.version, /^similarity-v1/);
      assert.match(runtime.warnings.join('\n'), /attention .* unavailable/);
    } finally {
      await runtime.close();
      await rm(join(modelsDir, 'tiny'), { recursive: true, force: true });
    }
  });
});
