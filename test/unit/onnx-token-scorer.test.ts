import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LightmemError } from '../../services/core/errors.js';
import type { ScoredWord } from '../../services/core/ports/token-scorer.js';
import { systemClock } from '../../services/core/ports/clock.js';
import { OnnxTokenScorer } from '../../services/adapters/onnx/onnx-token-scorer.js';
import { manifestFileName, modelFileName } from '../../services/models/model-manifest.js';
import { loadConfig } from '../../services/runtime/load-config.js';
import { EmbeddedRuntime } from '../../services/runtime/embedded-runtime.js';
import { stderrLogger } from '../../services/runtime/stderr-logger.js';
import { selectWords } from '../../services/stages/compressor/percentile-selection.js';
import { compressTexts } from '../../services/stages/compressor/sensory-compressor.js';
import {
  sigmoid,
  tinyClassifierModel,
  tinyKeepLogits,
  tinySentencePieceTokenizerJson,
  tinySentencePieceVocab,
  writeTinyClassifierFolder,
  type TinyClassifierFolderOptions,
} from '../support/tiny-token-classifier.js';
import { tempDir } from '../support/cli.js';
import { ingestEvents } from '../support/embedded.js';
import { Topics } from '../../services/core/model/topics.js';

const folders: string[] = [];
const scorers: OnnxTokenScorer[] = [];
after(async () => {
  for (const scorer of scorers) await scorer.close();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

async function tinyFolder(options: TinyClassifierFolderOptions = {}): Promise<string> {
  const folder = await writeTinyClassifierFolder(options);
  folders.push(folder);
  return folder;
}

async function tinyScorer(
  options: TinyClassifierFolderOptions = {},
  batchSize?: number,
): Promise<OnnxTokenScorer> {
  const scorer = await OnnxTokenScorer.load(await tinyFolder(options), {
    threads: 1,
    ...(batchSize === undefined ? {} : { batchSize }),
  });
  scorers.push(scorer);
  return scorer;
}

/** Keep probability of a tiny-vocabulary token (its row is [0, k]). */
function p(token: keyof typeof tinyKeepLogits): number {
  return sigmoid(tinyKeepLogits[token]);
}

function mean(...values: number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / values.length;
}

/** The hand computation for the tiny WordPiece tokenizer's words. */
const expectedKeep: Record<string, number> = {
  i: p('i'),
  I: p('i'),
  went: p('went'),
  to: p('to'),
  the: p('the'),
  park: p('park'),
  'Park.': mean(p('park'), p('.')),
  'park.': mean(p('park'), p('.')),
  playing: mean(p('play'), p('##ing')),
  dogs: mean(p('dog'), p('##s')),
  cat: p('cat'),
  a: p('a'),
  zebra: p('[UNK]'),
};

function assertWords(actual: readonly ScoredWord[], words: readonly string[]): void {
  assert.deepEqual(
    actual.map((w) => w.word),
    words,
  );
  actual.forEach((scored, i) => {
    const expected = expectedKeep[scored.word];
    assert.ok(expected !== undefined, scored.word);
    assert.ok(
      Math.abs(scored.keep - expected) < 1e-6,
      `word ${i} ${scored.word}: ${scored.keep} vs ${expected}`,
    );
  });
}

describe('OnnxTokenScorer: LLMLingua-2 scoring', () => {
  let scorer: OnnxTokenScorer;
  before(async () => {
    scorer = await tinyScorer({ maxPositions: 512 });
  });

  it('word keep-probability = mean of its subwords’ softmax[1]; words are the text’s own', async () => {
    const [scored] = await scorer.score(['I went to the Park.  playing\ndogs zebra']);
    assertWords(scored ?? [], ['I', 'went', 'to', 'the', 'Park.', 'playing', 'dogs', 'zebra']);
    assert.equal(scorer.scheme, 'wordpiece');
    // tokens are LLM tokens of the word (as the percentile expects), not subwords.
    assert.deepEqual(
      scored?.map((w) => w.tokens),
      [1, 1, 1, 1, 2, 2, 1, 1],
    );
  });

  it('version names the model and its sha256 prefix', () => {
    assert.match(scorer.version, /^tiny-llmlingua@[0-9a-f]{12}$/);
  });

  it('empty and whitespace-only texts have no words', async () => {
    assert.deepEqual(await scorer.score([]), []);
    assert.deepEqual(await scorer.score(['', ' \n ']), [[], []]);
  });

  it('a text over 510 subwords is chunked: every word scored, in order', async () => {
    // A non-periodic word sequence, so misplaced chunk results would not match.
    const vocabulary = ['i', 'went', 'to', 'the', 'park.', 'playing', 'dogs', 'cat', 'a', 'zebra'];
    const words = Array.from({ length: 700 }, (_, i) => vocabulary[((i * i + 3 * i) % 7) + (i % 3)] ?? 'a');
    // The model accepts 512 positions: without chunking it would fail.
    const [scored] = await scorer.score([words.join(' ')]);
    assert.equal(scored?.length, 700);
    assertWords(scored ?? [], words);
  });

  it('a batch of texts (several runs, sorted by length) comes back in input order', async () => {
    const small = await tinyScorer({ maxPositions: 512 }, 2);
    const texts = [
      'playing dogs park. '.repeat(200),
      'the cat',
      'i went to the park.',
      '',
      'a zebra',
      'dogs '.repeat(300),
    ];
    const scored = await small.score(texts);
    assert.equal(scored.length, texts.length);
    scored.forEach((words, i) =>
      assertWords(
        words,
        (texts[i] ?? '').split(/\s+/).filter((w) => w.length > 0),
      ),
    );
  });

  it('a SentencePiece (XLM-R style) tokenizer: ▁ starts a word, the mean spans its pieces', async () => {
    const table = tinySentencePieceVocab.map((_, id) => [0, id - 6]);
    const sp = await tinyScorer({ tokenizer: tinySentencePieceTokenizerJson(), table });
    assert.equal(sp.scheme, 'sentencepiece');
    const id = (piece: (typeof tinySentencePieceVocab)[number]) => tinySentencePieceVocab.indexOf(piece);
    const q = (piece: (typeof tinySentencePieceVocab)[number]) => sigmoid(id(piece) - 6);
    const [scored] = await sp.score(['i playing dogs park.']);
    assert.deepEqual(
      scored?.map((w) => w.word),
      ['i', 'playing', 'dogs', 'park.'],
    );
    const expected = [q('▁i'), mean(q('▁play'), q('ing')), mean(q('▁dog'), q('s')), mean(q('▁park'), q('.'))];
    scored?.forEach((w, i) =>
      assert.ok(Math.abs(w.keep - (expected[i] ?? NaN)) < 1e-6, `${w.word}: ${w.keep}`),
    );
  });
});

describe('OnnxTokenScorer: compression with the model', () => {
  let scorer: OnnxTokenScorer;
  before(async () => {
    scorer = await tinyScorer();
  });

  it('percentile selection at r = 0.5 keeps exactly the expected words', async () => {
    // keep: i .27, went .73, to .12, the .05, park .95; threshold = percentile 51 of the 5 = .2875.
    const [scored] = await scorer.score(['i went to the park']);
    assert.deepEqual(
      selectWords(scored ?? [], 0.5).map((w) => w.word),
      ['went', 'park'],
    );
  });

  it('compressTexts: selection, re-compression over the limit, original when nothing survives', async () => {
    const text = 'i went to the park playing dogs cat';
    // r = 0.5 over 9 LLM tokens (playing costs 2): threshold = mean(play, ##ing) = .6904, kept strictly above.
    const [once] = await compressTexts([text], scorer, { rate: 0.5, maxTokens: 512, recompressRate: 0.5 });
    assert.equal(once?.text, 'went park cat');
    assert.equal(once?.originalTokens, 9);
    assert.equal(once?.keptTokens, 3);
    // Over maxTokens 2: compressed again at 0.5 → threshold .8207 → park.
    const [twice] = await compressTexts([text], scorer, { rate: 0.5, maxTokens: 2, recompressRate: 0.5 });
    assert.equal(twice?.text, 'park');
    // All words equally likely: nothing strictly above the percentile, the original is kept.
    const same = 'the the the the';
    const [kept] = await compressTexts([same, text], scorer, {
      rate: 0.5,
      maxTokens: 512,
      recompressRate: 0.5,
    });
    assert.equal(kept?.text, same);
    assert.equal(kept?.keptTokens, 4);
  });
});

describe('OnnxTokenScorer: bad folders are typed, non-retryable errors', () => {
  async function rejectsWith(folder: string, code: string, mentions: RegExp): Promise<void> {
    await assert.rejects(OnnxTokenScorer.load(folder, { threads: 1 }), (error: unknown) => {
      assert.ok(error instanceof LightmemError, String(error));
      assert.equal(error.code, code, error.message);
      assert.equal(error.retryable, false);
      assert.match(error.message, mentions);
      return true;
    });
  }

  it('a missing folder is not_found', async () => {
    await rejectsWith(join(tmpdir(), 'lightmem-no-such-classifier'), 'not_found', /lightmem-model\.json/);
  });

  it('an embedder folder (wrong kind) or a manifest with 3 labels is config_invalid', async () => {
    await rejectsWith(await tinyFolder({ manifest: { kind: 'embedder' } }), 'config_invalid', /kind/);
    await rejectsWith(await tinyFolder({ manifest: { dims: 3 } }), 'config_invalid', /2 labels/);
  });

  it('a model whose output is not [batch, seq, 2] is config_invalid', async () => {
    await rejectsWith(await tinyFolder({ shape: 'pooled' }), 'config_invalid', /shape \[1, 2\]/);
    const threeLabels = Array.from({ length: 16 }, () => [0, 1, 2]);
    await rejectsWith(await tinyFolder({ table: threeLabels }), 'config_invalid', /shape \[1, \d+, 3\]/);
  });

  it('one output under another name is accepted; a model file that changed is config_invalid', async () => {
    const folder = await tinyFolder({ outputName: 'scores' });
    // One output under another name is accepted (some exports name it differently).
    scorers.push(await OnnxTokenScorer.load(folder, { threads: 1 }));
    const changed = await tinyFolder();
    await writeFile(join(changed, modelFileName), tinyClassifierModel({ maxPositions: 64 }));
    await rejectsWith(changed, 'config_invalid', /sha256/);
  });
});

describe('the runtime and models.compressor', () => {
  const dir = tempDir('compressor-model');
  after(() => dir.remove());
  const logger = stderrLogger('silent');

  function config(modelsDir: string, compressor?: string) {
    return loadConfig({
      env: { LIGHTMEM_MODELS_DIR: modelsDir, LIGHTMEM_EMBEDDER: 'none' },
      overrides: {
        dataDir: join(dir.path, `data-${compressor ?? 'none'}`),
        // minWords 0: the test's turns are short, and short turns are kept whole by default.
        compressor: { rate: 0.5, minWords: 0 },
        ...(compressor === undefined ? {} : { models: { compressor } }),
      },
    });
  }

  it('uses the installed LLMLingua-2 folder that models.compressor names', async () => {
    const modelsDir = join(dir.path, 'models');
    await mkdir(join(modelsDir, 'tiny-llmlingua'), { recursive: true });
    await writeTinyClassifierFolder({}, join(modelsDir, 'tiny-llmlingua'));
    const runtime = await EmbeddedRuntime.open(config(modelsDir, 'tiny-llmlingua'), {
      logger,
      clock: systemClock,
    });
    try {
      assert.match(runtime.components.scorer.version, /^tiny-llmlingua@[0-9a-f]{12}$/);
      assert.doesNotMatch(runtime.warnings.join('\n'), /compressor/);
      // A turn through the pipeline is compressed by the model (same words as the compressTexts test).
      runtime.startPipeline();
      await ingestEvents(runtime, [
        {
          tenantId: 'acme',
          userId: 'alice',
          conversationId: 'c1',
          turnId: 't0',
          seq: 0,
          role: 'user',
          speaker: 'alice',
          text: 'i went to the park playing dogs cat',
          occurredAt: '2024-05-01T09:00:00Z',
        },
      ]);
      const [compressed] = await runtime.eventLog.read(Topics.compressed, 0, 10);
      assert.equal(compressed?.value.compressedText, 'went park cat');
      assert.match(compressed?.value.scorerVersion ?? '', /^tiny-llmlingua@[0-9a-f]{12}@r0\.5$/);
    } finally {
      await runtime.close();
    }
  });

  it('a configured but missing model: the built-in scorer, and a warning on how to install one', async () => {
    const modelsDir = join(dir.path, 'models');
    const runtime = await EmbeddedRuntime.open(config(modelsDir, 'llmlingua-2-bert'), {
      logger,
      clock: systemClock,
    });
    try {
      assert.equal(runtime.components.scorer.version, 'builtin-heuristic-v2');
      const warnings = runtime.warnings.join('\n');
      assert.match(
        warnings,
        /compressor model llmlingua-2-bert is not usable \(not installed\).*built-in heuristic scorer/,
      );
      assert.match(warnings, /LLMLingua-2 ONNX export .*token-classifier\) in .*llmlingua-2-bert/);
    } finally {
      await runtime.close();
    }
  });

  it('a broken model folder falls back the same way; no compressor configured: unchanged, no warning', async () => {
    const modelsDir = join(dir.path, 'models');
    const broken = join(modelsDir, 'broken');
    await mkdir(broken, { recursive: true });
    await writeTinyClassifierFolder({ shape: 'pooled' }, broken);
    const runtime = await EmbeddedRuntime.open(config(modelsDir, 'broken'), { logger, clock: systemClock });
    try {
      assert.equal(runtime.components.scorer.version, 'builtin-heuristic-v2');
      assert.match(runtime.warnings.join('\n'), /compressor model broken is not usable \(.*shape/);
    } finally {
      await runtime.close();
    }
    await writeFile(join(broken, manifestFileName), '{}');
    const plain = await EmbeddedRuntime.open(config(modelsDir), { logger, clock: systemClock });
    try {
      assert.equal(plain.components.scorer.version, 'builtin-heuristic-v2');
      assert.doesNotMatch(plain.warnings.join('\n'), /compressor/);
    } finally {
      await plain.close();
    }
  });
});
