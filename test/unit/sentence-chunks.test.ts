import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { turnChunks } from '../../services/stages/summarizer/sentence-chunks.js';

const words = (n: number, prefix = 'w'): string =>
  Array.from({ length: n }, (_, i) => `${prefix}${i}`).join(' ');

describe('long turns cut into sentence chunks', () => {
  it('leaves a turn of at most maxWords words whole, and does nothing when off', () => {
    const text = `${words(10)}. ${words(5, 'v')}.`;
    assert.deepEqual(turnChunks(text, null, 40), [{ text, sourceText: null }]);
    const long = `${words(30)}. ${words(30, 'v')}.`;
    assert.deepEqual(turnChunks(long, null, 0), [{ text: long, sourceText: null }]);
  });

  it('packs whole sentences up to maxWords and cuts at sentence ends', () => {
    const a = 'I moved to Denver last spring.'; // 6 words
    const b = 'The winters are cold but sunny.'; // 6 words
    const c = 'My sister visits every May and we hike.'; // 8 words
    const chunks = turnChunks(`${a} ${b} ${c}`, null, 12);
    assert.deepEqual(
      chunks.map((ch) => ch.text),
      [`${a} ${b}`, c],
    );
  });

  it('cuts at line breaks (lists) and cuts a sentence longer than maxWords by words', () => {
    const list = `Options:\n- first thing to try\n- second thing to try\n${words(25)}`;
    const chunks = turnChunks(list, null, 10);
    assert.ok(chunks.every((ch) => ch.text.split(' ').length <= 10));
    assert.equal(
      chunks.map((ch) => ch.text).join(' '),
      list.split(/\s+/).join(' '),
      'no word lost or repeated',
    );
  });

  it('gives each chunk the compressed words that fall inside it, and its own source words', () => {
    const source =
      'I adopted a dog named Max in June. He is a golden retriever and loves the lake near our house.';
    const compressed = 'adopted dog Max June. golden retriever loves lake';
    assert.deepEqual(turnChunks(compressed, source, 10), [
      { text: 'adopted dog Max June.', sourceText: 'I adopted a dog named Max in June.' },
      // "our house." (the rest of the long sentence) kept no word: no memory of it.
      { text: 'golden retriever loves lake', sourceText: 'He is a golden retriever and loves the lake near' },
    ]);
  });

  it('keeps the turn whole when the compressed words are not the source words in order', () => {
    const source = `${words(20)}. ${words(20, 'v')}.`;
    const compressed = 'v3 w2 something-else';
    assert.deepEqual(turnChunks(compressed, source, 10), [{ text: compressed, sourceText: source }]);
  });
});
