import type { MemoryEntry } from '../core/model/generated.js';
import type { MemoryWrite } from '../core/ports/memory-store.js';

/**
 * Synthetic memories for `lightmem bench scale`: text with the word distribution of conversation turns
 * (function words plus a Zipf-distributed content vocabulary) and random unit vectors, from a seeded RNG
 * so two runs build the same stores. No model: the vectors have no meaning, only the shape of the work.
 */

/** The embedder id the synthetic vectors claim. */
export const SCALE_EMBEDDER = 'bench-random';

/** mulberry32: a small, fast, seeded 32-bit generator; uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FUNCTION_WORDS = (
  'i you we my your the a an and to of in on at for with about it is was that this so but just ' +
  'really think have had will can would do did not be been going like get got me our they he she'
).split(' ');
const CONTENT_HEAD = (
  'time day week weekend today yesterday tomorrow work job office meeting project team boss friend ' +
  'family mom dad sister brother kids dog cat car house apartment trip travel flight hotel beach city ' +
  'book movie music song concert game dinner lunch coffee restaurant recipe cooking garden running gym ' +
  'yoga doctor appointment birthday party gift wedding school class course exam plan idea problem ' +
  'order account payment refund delivery package phone laptop app password subscription invoice bill ' +
  'vacation summer winter morning evening night new old favorite great good bad busy happy tired'
).split(' ');
const SYLLABLES =
  'ba be bi bo bu ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu'.split(
    ' ',
  );

/** A vocabulary of `size` content words, the common ones first, and the Zipf CDF to draw from it. */
export class Vocabulary {
  readonly words: string[];
  private readonly cdf: Float64Array;

  constructor(size = 20_000, exponent = 1.07) {
    const words = [...CONTENT_HEAD];
    const seen = new Set(words);
    const random = seededRandom(7);
    while (words.length < size) {
      const count = 2 + Math.floor(random() * 3);
      let word = '';
      for (let i = 0; i < count; i++) word += SYLLABLES[Math.floor(random() * SYLLABLES.length)] ?? 'x';
      if (seen.has(word)) continue;
      seen.add(word);
      words.push(word);
    }
    this.words = words;
    this.cdf = new Float64Array(words.length);
    let total = 0;
    for (let rank = 0; rank < words.length; rank++) {
      total += 1 / Math.pow(rank + 1, exponent);
      this.cdf[rank] = total;
    }
    for (let rank = 0; rank < words.length; rank++) this.cdf[rank] = (this.cdf[rank] ?? 0) / total;
  }

  draw(random: () => number): string {
    const u = random();
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.cdf[mid] ?? 1) < u) lo = mid + 1;
      else hi = mid;
    }
    return this.words[lo] ?? 'word';
  }
}

/** One conversation turn: 8–40 words, about 40% function words. */
export function turnText(vocabulary: Vocabulary, random: () => number): string {
  const length = 8 + Math.floor(random() * random() * 33);
  const words: string[] = [];
  for (let i = 0; i < length; i++) {
    words.push(
      random() < 0.4
        ? (FUNCTION_WORDS[Math.floor(random() * FUNCTION_WORDS.length)] ?? 'the')
        : vocabulary.draw(random),
    );
  }
  const text = words.join(' ');
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

/** A question about a memory: a few of its content words plus a couple of drawn ones. */
export function questionText(memoryText: string, vocabulary: Vocabulary, random: () => number): string {
  const content = memoryText
    .toLowerCase()
    .replace(/[^a-z ]/g, '')
    .split(' ')
    .filter((word) => word.length > 0 && !FUNCTION_WORDS.includes(word));
  const picked: string[] = [];
  const want = Math.min(content.length, 2 + Math.floor(random() * 3));
  for (let i = 0; i < want; i++) picked.push(content[Math.floor(random() * content.length)] ?? 'time');
  picked.push(vocabulary.draw(random), vocabulary.draw(random));
  return `what did I say about ${picked.join(' ')}?`;
}

/** A random unit vector (uniform direction). */
export function unitVector(dims: number, random: () => number): Float32Array {
  const vector = new Float32Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i += 2) {
    // Box-Muller: two normal deviates per pair of uniforms.
    const r = Math.sqrt(-2 * Math.log(1 - random()));
    const angle = 2 * Math.PI * random();
    vector[i] = r * Math.cos(angle);
    if (i + 1 < dims) vector[i + 1] = r * Math.sin(angle);
  }
  for (const value of vector) norm += value * value;
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < dims; i++) vector[i] = (vector[i] ?? 0) / norm;
  return vector;
}

/** A query vector near `target` (cosine about 0.7 to it), so the kNN has a real nearest neighbour. */
export function nearVector(target: Float32Array, random: () => number): Float32Array {
  const noise = unitVector(target.length, random);
  const out = new Float32Array(target.length);
  let norm = 0;
  for (let i = 0; i < target.length; i++) {
    out[i] = (target[i] ?? 0) + (noise[i] ?? 0);
    norm += (out[i] ?? 0) * (out[i] ?? 0);
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < out.length; i++) out[i] = (out[i] ?? 0) / norm;
  return out;
}

const BASE_TIME = Date.UTC(2024, 0, 1);

/** The `index`-th synthetic memory of a user, with its embedding. */
export function syntheticWrite(
  tenantId: string,
  userId: string,
  index: number,
  text: string,
  embedding: Float32Array,
): MemoryWrite {
  const occurredAt = BASE_TIME + index * 60_000;
  const conversation = `c-${userId}-${Math.floor(index / 40)}`;
  const entry: MemoryEntry = {
    id: `m-${tenantId}-${userId}-${index}`,
    tenantId,
    userId,
    agentId: null,
    conversationId: conversation,
    sessionId: conversation,
    text,
    kind: 'fact',
    topicId: `${conversation}-${Math.floor(index / 8)}`,
    speaker: index % 2 === 0 ? userId : 'assistant',
    occurredAt,
    zoneOffset: '+00:00',
    ingestedAt: occurredAt,
    validFrom: occurredAt,
    validTo: null,
    supersededBy: null,
    sourceTurnIds: [`t-${index}`],
    pipeline: {
      scorer: 'bench',
      segmenter: 'bench',
      extractor: 'bench',
      promptHash: null,
      embedder: SCALE_EMBEDDER,
    },
    sourceText: null,
  };
  return { entry, embedding };
}
