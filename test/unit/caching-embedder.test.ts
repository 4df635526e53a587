import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CachingEmbedder } from '../../services/runtime/caching-embedder.js';
import type { Embedder } from '../../services/core/ports/embedder.js';

/** Vector = [length of the text, call number]: shows which call produced a vector. */
function countingEmbedder(): Embedder & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    id: 'counting',
    dims: 2,
    calls,
    embed: (texts) => {
      calls.push([...texts]);
      return Promise.resolve(texts.map((t) => Float32Array.from([t.length, calls.length])));
    },
  };
}

describe('CachingEmbedder', () => {
  it('keeps the cached vectors a call found even if a concurrent call evicts them meanwhile', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let slow = true;
    const inner: Embedder = {
      id: 'gated',
      dims: 1,
      embed: async (texts) => {
        if (slow) {
          slow = false;
          await gate;
        }
        return texts.map((t) => Float32Array.from([t.length]));
      },
    };
    const cache = new CachingEmbedder(inner, 2);
    slow = false;
    await cache.embed(['a', 'b']);
    slow = true;
    const waiting = cache.embed(['a', 'xxx']); // 'a' cached, 'xxx' waits for the model
    await cache.embed(['yy', 'zzzz', 'wwwww']); // evicts 'a' meanwhile
    release();
    assert.deepEqual(
      (await waiting).map((v) => Array.from(v)),
      [[1], [3]],
    );
  });

  it('embeds each distinct text once and returns vectors in input order', async () => {
    const inner = countingEmbedder();
    const cache = new CachingEmbedder(inner, 100);
    const first = await cache.embed(['a', 'bb', 'a']);
    assert.deepEqual(inner.calls, [['a', 'bb']]);
    assert.deepEqual(
      first.map((v) => Array.from(v)),
      [
        [1, 1],
        [2, 1],
        [1, 1],
      ],
    );
    const second = await cache.embed(['ccc', 'bb']);
    assert.deepEqual(inner.calls[1], ['ccc']);
    assert.deepEqual(Array.from(second[1] ?? []), [2, 1], 'the cached vector, from the first call');
    assert.equal(cache.hits, 2);
    assert.equal(cache.misses, 3);
    assert.equal(cache.id, 'counting');
  });

  it('forgets the least recently used text beyond its capacity', async () => {
    const inner = countingEmbedder();
    const cache = new CachingEmbedder(inner, 2);
    await cache.embed(['a', 'b']);
    await cache.embed(['a']); // a is now more recent than b
    await cache.embed(['c']); // evicts b
    await cache.embed(['a', 'b']);
    assert.deepEqual(inner.calls.at(-1), ['b']);
  });

  it('capacity 0 caches nothing but still embeds equal texts of one call once', async () => {
    const inner = countingEmbedder();
    const cache = new CachingEmbedder(inner, 0);
    await cache.embed(['a', 'a']);
    await cache.embed(['a']);
    assert.deepEqual(inner.calls, [['a'], ['a']]);
  });
});
