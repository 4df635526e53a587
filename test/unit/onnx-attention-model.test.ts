import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { OnnxAttentionModel } from '../../services/adapters/onnx/onnx-attention-model.js';
import { OnnxEmbedder } from '../../services/adapters/onnx/onnx-embedder.js';
import { HybridSegmenter, defaultHybridSettings } from '../../services/stages/segmenter/hybrid-segmenter.js';
import { LightmemError } from '../../services/core/errors.js';
import { writeTinyEmbedderFolder } from '../support/tiny-onnx.js';
import { realBgeFolder, skipBge } from '../support/real-models.js';

const folders: string[] = [];
after(async () => {
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

describe('OnnxAttentionModel', () => {
  it('refuses an encoder with no self-attention Softmax to expose', async () => {
    const folder = await writeTinyEmbedderFolder();
    folders.push(folder);
    await assert.rejects(
      OnnxAttentionModel.load(folder),
      (error: unknown) =>
        error instanceof LightmemError && error.code === 'config_invalid' && /Softmax/.test(error.message),
    );
  });

  it(
    'exposes the last layers of the real bge-small and averages them into one token matrix',
    { skip: skipBge },
    async () => {
      const folder = await realBgeFolder();
      folders.push(folder);
      const model = await OnnxAttentionModel.load(folder);
      assert.match(model.id, /attention\(L8,9,10,11\)/);
      const sentences = [
        'I adopted a puppy last week.',
        'She loves long walks in the park.',
        'My tax return is due on Friday.',
      ];
      const { matrix, spans } = await model.attention(sentences);
      assert.equal(spans.length, 3);
      assert.equal(spans[0]!.start, 1, 'after [CLS]');
      for (let i = 1; i < spans.length; i++) assert.equal(spans[i]!.start, spans[i - 1]!.end);
      assert.equal(matrix.length, spans.at(-1)!.end + 1, '[SEP] closes the sequence');
      for (const row of matrix) {
        assert.equal(row.length, matrix.length);
        const sum = row.reduce((a, b) => a + b, 0);
        assert.ok(Math.abs(sum - 1) < 1e-3, `row sums to ${sum}`);
      }
      await model.close();
    },
  );

  it('leaves sentences that do not fit in the model length without a span', { skip: skipBge }, async () => {
    const folder = await realBgeFolder();
    folders.push(folder);
    const model = await OnnxAttentionModel.load(folder);
    const long = Array.from({ length: 100 }, (_, i) => `This is sentence number ${i} about something.`);
    const { matrix, spans } = await model.attention(long);
    assert.ok(spans.length > 10 && spans.length < 100, `${spans.length} spans`);
    assert.ok(matrix.length <= 512);
    await model.close();
  });

  it('drives the hybrid segmenter with the real models', { skip: skipBge }, async () => {
    const folder = await realBgeFolder();
    folders.push(folder);
    const [attention, embedder] = await Promise.all([
      OnnxAttentionModel.load(folder),
      OnnxEmbedder.load(folder),
    ]);
    const turns = [
      'I adopted a puppy last week.',
      'He is a golden retriever called Max.',
      'Max already knows how to sit.',
      'We walk him twice a day.',
      'By the way, my tax return is due on Friday.',
      'I still need my income statements from the bank.',
      'Do you know if I can file for an extension?',
      'The deadline stresses me out.',
    ].map((text) => ({ role: 'user' as const, text }));
    const segmenter = new HybridSegmenter(attention, embedder, { ...defaultHybridSettings, rule: 'union' });
    const cuts = await segmenter.boundaries(turns);
    for (const cut of cuts) assert.ok(cut.index > 0 && cut.index < turns.length);
    assert.ok(
      cuts.some((cut) => Math.abs(cut.index - 4) <= 1),
      `expected a cut near the topic change at turn 4, got ${JSON.stringify(cuts)}`,
    );
    await attention.close();
    await embedder.close();
  });
});
