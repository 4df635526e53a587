import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BuiltinTokenScorer, scoreWord } from '../../services/stages/compressor/builtin-token-scorer.js';
import { compressorStage } from '../../services/stages/compressor/compressor-stage.js';
import { eventDedupKey } from '../../services/core/model/keys.js';
import { percentile, selectWords } from '../../services/stages/compressor/percentile-selection.js';
import {
  compressTexts,
  type CompressionSettings,
} from '../../services/stages/compressor/sensory-compressor.js';
import type { CompressedTurn, ConversationEvent } from '../../services/core/model/generated.js';
import { Topics } from '../../services/core/model/topics.js';
import type { LogRecord, StageOutput, StateReader, StateWrite } from '../../services/core/ports/event-log.js';
import type { ScoredWord, TokenScorer } from '../../services/core/ports/token-scorer.js';
import { T0, makeTurn } from '../support/event-fixtures.js';

function words(keeps: readonly number[], tokens: readonly number[] = []): ScoredWord[] {
  return keeps.map((keep, i) => ({ word: `w${i + 1}`, keep, tokens: tokens[i] ?? 1 }));
}

/** A scorer that returns prepared words for every text, ignoring the text. */
function fixedScorer(scored: readonly ScoredWord[]): TokenScorer & { calls: number } {
  const scorer = {
    version: 'fixed-v1',
    calls: 0,
    score(texts: readonly string[]): Promise<ScoredWord[][]> {
      scorer.calls++;
      return Promise.resolve(texts.map(() => [...scored]));
    },
  };
  return scorer;
}

function event(turnId: string, overrides: Partial<ConversationEvent> = {}): ConversationEvent {
  return makeTurn(0, {
    turnId,
    speaker: 'Caroline',
    text: 'I went to a LGBTQ support group yesterday',
    metadata: {},
    ...overrides,
  });
}

function records(events: readonly ConversationEvent[], firstOffset = 0): LogRecord<typeof Topics.raw>[] {
  return events.map((value, i) => ({
    topic: Topics.raw,
    offset: firstOffset + i,
    key: `${value.tenantId}/${value.conversationId}`,
    value,
    appendedAt: T0,
  }));
}

/** A StateReader over the state writes of earlier batches (what the log would have committed). */
function stateFrom(...outputs: readonly StageOutput[]): StateReader {
  const map = new Map<string, string>();
  const apply = (write: StateWrite): void => {
    if (write.value === null) map.delete(write.key);
    else map.set(write.key, write.value);
  };
  for (const output of outputs) output.state.forEach(apply);
  return {
    get: (key) => Promise.resolve(map.get(key)),
    keys: (prefix) => Promise.resolve([...map.keys()].filter((key) => key.startsWith(prefix)).sort()),
  };
}

const emptyState = stateFrom();

function compressedValues(output: StageOutput): CompressedTurn[] {
  return output.records.map((record) => {
    assert.equal(record.topic, Topics.compressed);
    return record.value;
  });
}

describe('percentile (numpy linear interpolation)', () => {
  it('matches numpy on hand-computed cases', () => {
    // numpy.percentile([1, 2, 3, 4], 50) == 2.5; 25 -> 1.75; 0 -> 1; 100 -> 4
    assert.equal(percentile([1, 2, 3, 4], 50), 2.5);
    assert.equal(percentile([1, 2, 3, 4], 25), 1.75);
    assert.equal(percentile([1, 2, 3, 4], 0), 1);
    assert.equal(percentile([1, 2, 3, 4], 100), 4);
    // position 0.41 * 4 = 1.64 -> 20 + 0.64 * (30 - 20)
    assert.ok(Math.abs(percentile([10, 20, 30, 40, 50], 41) - 26.4) < 1e-9);
    // position 0.9 * 2 = 1.8 -> 0.5 + 0.8 * (0.9 - 0.5)
    assert.ok(Math.abs(percentile([0.1, 0.5, 0.9], 90) - 0.82) < 1e-9);
    // An exact position gives the element itself.
    assert.equal(percentile([3, 7, 11], 50), 7);
    assert.equal(percentile([42], 73), 42);
  });

  it('clamps q to [0, 100] and is NaN for an empty list', () => {
    assert.equal(percentile([1, 2, 3], 101), 3);
    assert.equal(percentile([1, 2, 3], -5), 1);
    assert.ok(Number.isNaN(percentile([], 50)));
  });
});

describe('selectWords (LLMLingua-2 rate selection)', () => {
  it('keeps words strictly above the percentile at 100·(1−r)+1', () => {
    // 101 words with keep 0.00, 0.01, …, 1.00. At r = 0.5 the threshold is the 51st percentile = 0.51:
    // words 0.52 … 1.00 survive (49 words). A 50th percentile would keep 50, a ≥ test would keep 50.
    const scored = Array.from({ length: 101 }, (_, i) => ({ word: `w${i}`, keep: i / 100, tokens: 1 }));
    const kept = selectWords(scored, 0.5);
    assert.equal(kept.length, 49);
    assert.equal(kept[0]?.word, 'w52');
    assert.equal(kept.at(-1)?.word, 'w100');
  });

  it('replicates each word’s probability once per token', () => {
    // keeps [0.2 ×5 tokens, 0.4, 0.8]: list 0.2,0.2,0.2,0.2,0.2,0.4,0.8; q = 51 -> position 3.06 -> 0.2.
    // Kept: 0.4 and 0.8. Without replication the list is 0.2,0.4,0.8 -> threshold 0.408 -> only 0.8.
    const kept = selectWords(words([0.2, 0.4, 0.8], [5, 1, 1]), 0.5);
    assert.deepEqual(
      kept.map((w) => w.word),
      ['w2', 'w3'],
    );
  });

  it('keeps the original order and a hand-computed selection', () => {
    // keeps [0.9 (1 token), 0.1 (3), 0.5 (1), 0.7 (2)] at r = 0.5:
    // list 0.1,0.1,0.1,0.5,0.7,0.7,0.9; position 0.51·6 = 3.06 -> 0.5 + 0.06·0.2 = 0.512 -> keep 0.9 and 0.7.
    const kept = selectWords(words([0.9, 0.1, 0.5, 0.7], [1, 3, 1, 2]), 0.5);
    assert.deepEqual(
      kept.map((w) => w.word),
      ['w1', 'w4'],
    );
  });

  it('rate 1 keeps everything; equal probabilities keep nothing', () => {
    const all = words([0.3, 0.3, 0.3]);
    assert.equal(selectWords(all, 1).length, 3);
    assert.equal(selectWords(all, 0.5).length, 0);
    assert.deepEqual(selectWords([], 0.5), []);
  });
});

describe('compressTexts', () => {
  const settings = (overrides: Partial<CompressionSettings> = {}): CompressionSettings => ({
    rate: 0.5,
    maxTokens: 512,
    recompressRate: 0.5,
    ...overrides,
  });

  it('rate 1 keeps the text exactly', async () => {
    const text = 'Hello,   world  — as   typed';
    const [result] = await compressTexts(
      [text],
      fixedScorer(words([0.1, 0.9, 0.2, 0.8])),
      settings({ rate: 1 }),
    );
    assert.deepEqual(result, { text, originalTokens: 4, keptTokens: 4 });
  });

  it('keeps the words above the threshold, joined by single spaces', async () => {
    const [result] = await compressTexts(
      ['ignored'],
      fixedScorer(words([0.9, 0.1, 0.5, 0.7], [1, 3, 1, 2])),
      settings(),
    );
    assert.deepEqual(result, { text: 'w1 w4', originalTokens: 7, keptTokens: 3 });
  });

  it('keeps a text of at most minWords words whole, and compresses a longer one', async () => {
    const scorer = fixedScorer(words([0.9, 0.1, 0.5, 0.7], [1, 3, 1, 2]));
    const [short] = await compressTexts(['the original'], scorer, settings({ minWords: 4 }));
    assert.deepEqual(short, { text: 'the original', originalTokens: 7, keptTokens: 7 });
    const [long] = await compressTexts(['ignored'], scorer, settings({ minWords: 3 }));
    assert.deepEqual(long, { text: 'w1 w4', originalTokens: 7, keptTokens: 3 });
  });

  it('keeps the original when compression leaves nothing', async () => {
    const [result] = await compressTexts(['all the same'], fixedScorer(words([0.4, 0.4, 0.4])), settings());
    assert.deepEqual(result, { text: 'all the same', originalTokens: 3, keptTokens: 3 });
  });

  it('compresses again while the result is over maxTokens', async () => {
    // keeps 0.1 … 1.0. First pass at r = 0.8: q = 21 -> threshold 0.289 -> w3 … w10 (8 tokens).
    // Over 3: r = 0.5 on 0.3 … 1.0 -> threshold 0.657 -> w7 … w10 (4 tokens). Still over: 0.7 … 1.0 ->
    // threshold 0.853 -> w9, w10 (2 tokens). Done.
    const scorer = fixedScorer(words([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]));
    const [once] = await compressTexts(['x'], scorer, settings({ rate: 0.8 }));
    assert.equal(once?.text, 'w3 w4 w5 w6 w7 w8 w9 w10');
    const [again] = await compressTexts(['x'], scorer, settings({ rate: 0.8, maxTokens: 3 }));
    assert.deepEqual(again, { text: 'w9 w10', originalTokens: 10, keptTokens: 2 });
    const [oneMore] = await compressTexts(['x'], scorer, settings({ rate: 0.8, maxTokens: 4 }));
    assert.equal(oneMore?.text, 'w7 w8 w9 w10');
  });

  it('a re-compression that would leave nothing keeps the previous round, not the longer original', async () => {
    // First pass at r = 0.6 keeps the three 0.9 words (3 tokens > 2); a second pass over equal
    // probabilities keeps nothing.
    const scorer = fixedScorer(words([0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9]));
    const [result] = await compressTexts(
      ['the original seven word long text'],
      scorer,
      settings({ rate: 0.6, maxTokens: 2 }),
    );
    assert.deepEqual(result, { text: 'w5 w6 w7', originalTokens: 7, keptTokens: 3 });
  });

  it('scores all texts in one call and returns one result per text', async () => {
    const scorer = fixedScorer(words([0.9, 0.1]));
    const results = await compressTexts(['a', 'b', 'c'], scorer, settings());
    assert.equal(results.length, 3);
    assert.equal(scorer.calls, 1);
    assert.deepEqual(await compressTexts([], scorer, settings()), []);
    assert.equal(scorer.calls, 1, 'no call for no texts');
  });
});

describe('BuiltinTokenScorer', () => {
  it('orders fillers < function words < content words < names < numbers', () => {
    const filler = scoreWord('um', false);
    const functionWord = scoreWord('the', false);
    const content = scoreWord('support', false);
    const name = scoreWord('Melanie', false);
    const number = scoreWord('2023', false);
    assert.ok(filler < functionWord, 'filler < function word');
    assert.ok(functionWord < content, 'function word < content word');
    assert.ok(content < name, 'content word < name');
    assert.ok(name < number, 'name < number');
    // A capital at the start of a sentence is not a name.
    assert.ok(scoreWord('Support', true) < name);
    assert.equal(scoreWord('Support', true), scoreWord('support', false));
  });

  it('keeps LGBTQ, support, group, yesterday of the LoCoMo example at r = 0.6', async () => {
    // keeps: I .2, went .6, to .2, a .2, LGBTQ .93, support .75 (2 tokens), group .65, yesterday .85 (2 tokens).
    // List of 10: threshold at q = 41 is 0.6 + 0.69·0.05 = 0.6345, so "went" goes as well.
    const [result] = await compressTexts(
      ['I went to a LGBTQ support group yesterday'],
      new BuiltinTokenScorer(),
      {
        rate: 0.6,
        maxTokens: 512,
        recompressRate: 0.5,
      },
    );
    assert.deepEqual(result, { text: 'LGBTQ support group yesterday', originalTokens: 10, keptTokens: 6 });
  });

  it('drops fillers and function words first and keeps numbers and names', async () => {
    const [result] = await compressTexts(
      ['um well I think the 3 Acme invoices are late'],
      new BuiltinTokenScorer(),
      { rate: 0.5, maxTokens: 512, recompressRate: 0.5 },
    );
    assert.equal(result?.text, 'think 3 Acme invoices');
  });

  it('returns words that reproduce the text, with token counts', async () => {
    const [scored] = await new BuiltinTokenScorer().score(['Hello  there, Dr. Smith!']);
    assert.deepEqual(
      scored?.map((w) => w.word),
      ['Hello', 'there,', 'Dr.', 'Smith!'],
    );
    for (const word of scored ?? []) {
      assert.ok(word.keep >= 0 && word.keep <= 1);
      assert.ok(word.tokens >= 1);
    }
  });
});

describe('compressorStage', () => {
  const deps = {
    scorer: new BuiltinTokenScorer(),
    settings: { rate: 0.6, maxTokens: 512, recompressRate: 0.5 },
  };

  it('compresses turns and sets keepRatio and scorerVersion', async () => {
    const output = await compressorStage(deps)(records([event('t1')]), emptyState);
    const [value] = compressedValues(output);
    assert.equal(value?.compressedText, 'LGBTQ support group yesterday');
    assert.equal(value?.originalTokens, 10);
    assert.equal(value?.keptTokens, 6);
    assert.equal(value?.keepRatio, 0.6);
    assert.equal(value?.scorerVersion, 'builtin-heuristic-v2@r0.6');
    assert.equal(
      value?.event.text,
      'I went to a LGBTQ support group yesterday',
      'the original is kept beside',
    );
    const [record] = output.records;
    assert.equal(record?.key, 'tenant-a/conv-1');
    assert.equal(record?.dedupKey, eventDedupKey(event('t1')));
  });

  it('rate 1 passes text through with version "none"', async () => {
    const stage = compressorStage({ ...deps, settings: { ...deps.settings, rate: 1 } });
    const [value] = compressedValues(await stage(records([event('t1')]), emptyState));
    assert.equal(value?.compressedText, 'I went to a LGBTQ support group yesterday');
    assert.equal(value?.keepRatio, 1);
    assert.equal(value?.scorerVersion, 'none');
  });

  it('drops a turn it already saw in the same batch', async () => {
    const output = await compressorStage(deps)(
      records([event('t1'), event('t2', { text: 'Melanie paints' }), event('t1', { text: 'resent' })]),
      emptyState,
    );
    assert.deepEqual(
      compressedValues(output).map((v) => [v.event.turnId, v.event.text]),
      [
        ['t1', 'I went to a LGBTQ support group yesterday'],
        ['t2', 'Melanie paints'],
      ],
    );
  });

  it('drops a turn it saw in an earlier batch (through its state)', async () => {
    const stage = compressorStage(deps);
    const first = await stage(records([event('t1')]), emptyState);
    assert.equal(first.state.length, 1);
    const second = await stage(
      records([event('t1'), event('t3', { text: 'new news' })], 1),
      stateFrom(first),
    );
    assert.deepEqual(
      compressedValues(second).map((v) => v.event.turnId),
      ['t3'],
    );
    // Without the state the same turn would have gone through again.
    const forgetful = await stage(records([event('t1')], 1), emptyState);
    assert.equal(forgetful.records.length, 1);
  });

  it('the same turn id in another conversation, user or tenant is a different turn', async () => {
    const output = await compressorStage(deps)(
      records([
        event('t1'),
        event('t1', { conversationId: 'conv-2' }),
        event('t1', { userId: 'user-2' }),
        event('t1', { tenantId: 'tenant-b' }),
      ]),
      emptyState,
    );
    assert.equal(output.records.length, 4);
    assert.equal(new Set(output.state.map((w) => w.key)).size, 4);
  });

  it('passes session_end events through without compressing them', async () => {
    const end = event('end-1', { kind: 'session_end', role: 'system', speaker: 'lightmem', text: '' });
    const output = await compressorStage(deps)(records([event('t1'), end]), emptyState);
    const values = compressedValues(output);
    assert.deepEqual(
      values.map((v) => v.event.kind),
      ['turn', 'session_end'],
    );
    const passed = values[1];
    assert.equal(passed?.compressedText, '');
    assert.equal(passed?.keepRatio, 1);
    assert.equal(passed?.scorerVersion, 'builtin-heuristic-v2@r0.6');

    // A control event's text (if any) is never compressed.
    const noted = event('end-2', {
      kind: 'session_end',
      role: 'system',
      text: 'the customer hung up on the agent',
    });
    const [kept] = compressedValues(await compressorStage(deps)(records([noted]), emptyState));
    assert.equal(kept?.compressedText, 'the customer hung up on the agent');
    assert.equal(kept?.keptTokens, kept?.originalTokens);
  });
});
