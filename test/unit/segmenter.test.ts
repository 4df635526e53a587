import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  SimilaritySegmenter,
  cosine,
  defaultSimilaritySettings,
  depthScores,
} from '../../services/stages/segmenter/similarity-segmenter.js';
import {
  segmenterStage,
  sensoryStatePrefix,
  type SegmenterStageDeps,
} from '../../services/stages/segmenter/segmenter-stage.js';
import { SensoryBufferState } from '../../services/stages/segmenter/sensory-buffer.js';
import { conversationStateKey } from '../../services/stages/state-keys.js';
import type {
  CompressedTurn,
  ConversationEvent,
  Role,
  TopicSegment,
} from '../../services/core/model/generated.js';
import { Topics } from '../../services/core/model/topics.js';
import type { Embedder } from '../../services/core/ports/embedder.js';
import type { LogRecord, StageOutput } from '../../services/core/ports/event-log.js';
import type { Boundary, SegmentableTurn, Segmenter } from '../../services/core/ports/segmenter.js';
import { InMemoryState } from '../../services/stages/in-memory-state.js';

const T0 = Date.UTC(2025, 0, 1);

/** An Embedder returning prepared vectors, in order, for whatever texts it gets; it records the texts. */
class ScriptedEmbedder implements Embedder {
  readonly id = 'scripted';
  readonly dims: number;
  readonly calls: string[][] = [];

  constructor(private readonly vectors: readonly Float32Array[]) {
    this.dims = vectors[0]?.length ?? 2;
  }

  embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.calls.push([...texts]);
    assert.equal(texts.length, this.vectors.length, 'one prepared vector per unit');
    return Promise.resolve([...this.vectors]);
  }
}

/** Unit vectors in the plane whose adjacent cosines are exactly the given similarities (up to float32). */
function chain(similarities: readonly number[]): Float32Array[] {
  let angle = 0;
  const vectors = [Float32Array.from([1, 0])];
  for (const similarity of similarities) {
    angle += Math.acos(similarity);
    vectors.push(Float32Array.from([Math.cos(angle), Math.sin(angle)]));
  }
  return vectors;
}

const user = (text: string, speaker = 'Ana'): SegmentableTurn & { speaker: string } => ({
  role: 'user',
  text,
  speaker,
});
const assistant = (text: string): SegmentableTurn => ({ role: 'assistant', text });

/** LightMem's adaptive τ schedule (0.20 → 0.50 by 0.05). */
const adaptive = { ...defaultSimilaritySettings, criterion: 'adaptive' as const };

describe('SimilaritySegmenter', () => {
  it('test vectors have the intended similarities', () => {
    const [a, b, c, d] = chain([0.9, 0.42, 0.9]);
    assert.ok(Math.abs(cosine(a!, b!) - 0.9) < 1e-6);
    assert.ok(Math.abs(cosine(b!, c!) - 0.42) < 1e-6);
    assert.ok(Math.abs(cosine(c!, d!) - 0.9) < 1e-6);
  });

  it('depth: scores each drop by how far it falls below the peaks on both sides', () => {
    const depths = depthScores([0.9, 0.3, 0.8, 0.85, 0.2, 0.9]);
    const expected = [0, 0.6 + 0.6, 0.1 + 0.1, 0.05 + 0.05, 0.7 + 0.7, 0];
    depths.forEach((d, i) => assert.ok(Math.abs(d - (expected[i] ?? -1)) < 1e-9, `depth ${i}: ${d}`));
  });

  it('depth (default): finds every deep drop in the buffer, not only the first', async () => {
    const segmenter = new SimilaritySegmenter(new ScriptedEmbedder(chain([0.9, 0.3, 0.8, 0.85, 0.2, 0.9])));
    const cuts = await segmenter.boundaries(['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((t) => user(t)));
    assert.deepEqual(
      cuts.map((b) => b.index),
      [2, 5],
    );
    for (const cut of cuts) {
      assert.equal(cut.reason, 'similarity_drop');
      // The reported threshold is the level under which the drop here is deep enough; the drop is under it.
      assert.ok((cut.similarity ?? 1) < (cut.threshold ?? 0), JSON.stringify(cut));
    }
  });

  it('depth: works on an encoder whose unrelated texts still score above 0.5 (where adaptive τ finds nothing)', async () => {
    const bgeLike = [0.95, 0.72, 0.94, 0.93, 0.95];
    const turns = ['a', 'b', 'c', 'd', 'e', 'f'].map((t) => user(t));
    const depth = await new SimilaritySegmenter(new ScriptedEmbedder(chain(bgeLike))).boundaries(turns);
    assert.deepEqual(
      depth.map((b) => b.index),
      [2],
    );
    const tau = await new SimilaritySegmenter(new ScriptedEmbedder(chain(bgeLike)), adaptive).boundaries(
      turns,
    );
    assert.deepEqual(tau, []);
  });

  it('depth: a buffer on one topic (only shallow dips) is not cut', async () => {
    const segmenter = new SimilaritySegmenter(new ScriptedEmbedder(chain([0.9, 0.86, 0.89, 0.87, 0.9])));
    assert.deepEqual(await segmenter.boundaries(['a', 'b', 'c', 'd', 'e', 'f'].map((t) => user(t))), []);
  });

  it('adaptive: raises the threshold from 0.2 by 0.05 until a drop is found, and records it', async () => {
    const segmenter = new SimilaritySegmenter(new ScriptedEmbedder(chain([0.9, 0.42, 0.9])), adaptive);
    const boundaries = await segmenter.boundaries([user('a'), user('b'), user('c'), user('d')]);
    assert.equal(boundaries.length, 1);
    const [cut] = boundaries;
    assert.equal(cut?.index, 2);
    assert.equal(cut?.reason, 'similarity_drop');
    assert.ok(Math.abs((cut?.similarity ?? 0) - 0.42) < 1e-6);
    // 0.40 does not cut 0.42; 0.45 is the first threshold that does.
    assert.ok(Math.abs((cut?.threshold ?? 0) - 0.45) < 1e-9, `threshold ${cut?.threshold}`);
  });

  it('adaptive: stops at the first threshold that finds a drop (does not take every pair under 0.5)', async () => {
    // 0.1 is under 0.2 at once; 0.3 would only be cut at 0.35.
    const segmenter = new SimilaritySegmenter(new ScriptedEmbedder(chain([0.3, 0.1, 0.8])), adaptive);
    const boundaries = await segmenter.boundaries([user('a'), user('b'), user('c'), user('d')]);
    assert.deepEqual(
      boundaries.map((b) => b.index),
      [2],
    );
    assert.ok(Math.abs((boundaries[0]?.threshold ?? 0) - 0.2) < 1e-9);
  });

  it('adaptive: returns every drop under the threshold that found one', async () => {
    const segmenter = new SimilaritySegmenter(new ScriptedEmbedder(chain([0.27, 0.9, 0.28])), adaptive);
    const boundaries = await segmenter.boundaries([user('a'), user('b'), user('c'), user('d')]);
    assert.deepEqual(
      boundaries.map((b) => [b.index, Math.round((b.threshold ?? 0) * 100) / 100]),
      [
        [1, 0.3],
        [3, 0.3],
      ],
    );
  });

  it('adaptive: returns no boundary when every similarity is at least 0.5', async () => {
    // (1,0,0,0)·(1,1,1,1) = 1 / (1·2) = 0.5 exactly; 0.5 is not a drop.
    const exactHalf = [Float32Array.from([1, 0, 0, 0]), Float32Array.from([1, 1, 1, 1])];
    assert.equal(cosine(exactHalf[0]!, exactHalf[1]!), 0.5);
    assert.deepEqual(
      await new SimilaritySegmenter(new ScriptedEmbedder(exactHalf), adaptive).boundaries([
        user('a'),
        user('b'),
      ]),
      [],
    );

    const high = new SimilaritySegmenter(new ScriptedEmbedder(chain([0.5, 0.95, 0.7])), adaptive);
    assert.deepEqual(await high.boundaries([user('a'), user('b'), user('c'), user('d')]), []);

    // Just under 0.5 is cut at the last threshold.
    const justUnder = new SimilaritySegmenter(new ScriptedEmbedder(chain([0.49, 0.9])), adaptive);
    const [cut] = await justUnder.boundaries([user('a'), user('b'), user('c')]);
    assert.equal(cut?.index, 1);
    assert.ok(Math.abs((cut?.threshold ?? 0) - 0.5) < 1e-9);
  });

  it('joins assistant turns to the turn before them: boundaries only at human turns', async () => {
    // Units: [0,1] "a b", [2,3] "c d", [4] "e". Drop between the first two units.
    const embedder = new ScriptedEmbedder(chain([0.0, 0.9]));
    const boundaries = await new SimilaritySegmenter(embedder).boundaries([
      user('a'),
      assistant('b'),
      user('c'),
      assistant('d'),
      user('e'),
    ]);
    assert.deepEqual(embedder.calls, [['a b', 'c d', 'e']]);
    assert.deepEqual(
      boundaries.map((b) => b.index),
      [2],
    );
  });

  it('does not embed when there are fewer than two units', async () => {
    const embedder = new ScriptedEmbedder([]);
    const segmenter = new SimilaritySegmenter(embedder);
    assert.deepEqual(await segmenter.boundaries([]), []);
    assert.deepEqual(await segmenter.boundaries([user('a'), assistant('b'), assistant('c')]), []);
    assert.equal(embedder.calls.length, 0);
  });

  it('works for multi-party conversations: every human speaker starts a unit', async () => {
    // Three speakers, all role user: four units; the topic changes before the fourth turn.
    const embedder = new ScriptedEmbedder(chain([0.8, 0.7, 0.05]));
    const boundaries = await new SimilaritySegmenter(embedder).boundaries([
      user('the order is late', 'Ana'),
      user('which order', 'Bruno'),
      user('order 1234', 'Carla'),
      user('by the way my address changed', 'Ana'),
    ]);
    assert.deepEqual(embedder.calls[0], [
      'the order is late',
      'which order',
      'order 1234',
      'by the way my address changed',
    ]);
    assert.deepEqual(
      boundaries.map((b) => b.index),
      [3],
    );

    // Contact-centre roles (customer, agent, supervisor) are each their own unit too.
    const roles: Role[] = ['customer', 'agent', 'supervisor'];
    const staff = new ScriptedEmbedder(chain([0.1, 0.9]));
    const cuts = await new SimilaritySegmenter(staff).boundaries(
      roles.map((role, i) => ({ role, text: `r${i}` })),
    );
    assert.equal(staff.calls[0]?.length, 3);
    assert.deepEqual(
      cuts.map((b) => b.index),
      [1],
    );
  });

  it('the version names the embedder and the criterion with its parameters', () => {
    const depth = new SimilaritySegmenter(new ScriptedEmbedder([]));
    assert.match(depth.version, /scripted/);
    assert.match(depth.version, /depth0\.5σ≥0\.1/);
    const tau = new SimilaritySegmenter(new ScriptedEmbedder([]), adaptive);
    assert.match(tau.version, /adaptive0\.2\+0\.05\.\.0\.5/);
  });
});

// ---------------------------------------------------------------------------------------------------------

/** A Segmenter that proposes fixed boundaries (filtered to the buffer) and records each buffer it saw. */
class FixedSegmenter implements Segmenter {
  readonly version = 'fixed-v1';
  readonly capability = 'test';
  readonly calls: string[][] = [];

  constructor(private readonly cuts: readonly Boundary[] = []) {}

  boundaries(turns: readonly SegmentableTurn[]): Promise<Boundary[]> {
    this.calls.push(turns.map((t) => t.text));
    return Promise.resolve(this.cuts.filter((cut) => cut.index < turns.length));
  }
}

const drop = (index: number): Boundary => ({
  index,
  reason: 'similarity_drop',
  similarity: 0.1,
  threshold: 0.2,
});

/** A text of exactly n approximate tokens (short words count one each). */
function textOf(label: string, n: number): string {
  return [label, ...Array.from({ length: n - 1 }, () => 'w')].join(' ');
}

let receivedAt = T0;

function compressed(
  turnId: string,
  tokens: number,
  overrides: Partial<ConversationEvent> = {},
  scorerVersion = 'builtin@r0.6',
): CompressedTurn {
  receivedAt += 1000;
  const event: ConversationEvent = {
    kind: 'turn',
    tenantId: 'tenant-a',
    userId: 'user-1',
    agentId: 'agent-7',
    conversationId: 'conv-1',
    sessionId: 'sess-1',
    turnId,
    seq: Number(turnId.replace(/\D/g, '')) || 0,
    role: 'user',
    speaker: 'Ana',
    text: `original of ${turnId}`,
    occurredAt: receivedAt,
    zoneOffset: '+01:00',
    receivedAt,
    metadata: {},
    ...overrides,
  };
  const text = tokens === 0 ? '' : textOf(turnId, tokens);
  return {
    event,
    compressedText: text,
    originalTokens: tokens,
    keptTokens: tokens,
    keepRatio: 1,
    scorerVersion,
  };
}

function control(
  kind: 'session_end' | 'flush',
  turnId: string,
  overrides: Partial<ConversationEvent> = {},
): CompressedTurn {
  return compressed(turnId, 0, { kind, role: 'system', speaker: 'lightmem', ...overrides });
}

function asRecords(values: readonly CompressedTurn[]): LogRecord<typeof Topics.compressed>[] {
  return values.map((value, offset) => ({
    topic: Topics.compressed,
    offset,
    key: `${value.event.tenantId}/${value.event.conversationId}`,
    value,
    appendedAt: T0,
  }));
}

function segmentsOf(output: StageOutput): TopicSegment[] {
  return output.records.map((record) => {
    assert.equal(record.topic, Topics.segments);
    return record.value;
  });
}

const ids = (segment: TopicSegment | undefined): string[] => segment?.turns.map((t) => t.turnId) ?? [];

const bufferKey = conversationStateKey(sensoryStatePrefix, {
  tenantId: 'tenant-a',
  userId: 'user-1',
  conversationId: 'conv-1',
});

function bufferIn(state: InMemoryState): SensoryBufferState | undefined {
  const raw = state.map.get(bufferKey);
  return raw === undefined ? undefined : SensoryBufferState.parse(JSON.parse(raw));
}

function deps(
  segmenter: Segmenter,
  capacityTokens = 10,
  countedRoles: Role[] = ['user'],
): SegmenterStageDeps {
  return { segmenter, capacityTokens, countedRoles: new Set(countedRoles) };
}

/** Runs the stage batch by batch, carrying the state between batches like the log does. */
async function run(
  stageDeps: SegmenterStageDeps,
  batches: readonly (readonly CompressedTurn[])[],
  state = new InMemoryState(),
): Promise<{ segments: TopicSegment[]; outputs: StageOutput[]; state: InMemoryState }> {
  const stage = segmenterStage(stageDeps);
  const outputs: StageOutput[] = [];
  for (const batch of batches) {
    const output = await stage(asRecords(batch), state);
    state.apply(output.state);
    outputs.push(output);
  }
  return { segments: outputs.flatMap(segmentsOf), outputs, state };
}

describe('segmenterStage', () => {
  it('accumulates turns while the counted tokens fit the capacity', async () => {
    const segmenter = new FixedSegmenter([drop(1)]);
    const { segments, state } = await run(deps(segmenter), [
      [compressed('t1', 4), compressed('t2', 4), compressed('t3', 2)],
    ]);
    assert.deepEqual(segments, []);
    assert.equal(segmenter.calls.length, 0, 'the segmenter runs only when the buffer is full');
    const buffer = bufferIn(state);
    assert.deepEqual(
      buffer?.turns.map((t) => t.turnId),
      ['t1', 't2', 't3'],
    );
    assert.equal(buffer?.countedTokens, 10, 'exactly full still fits');
  });

  it('when the next turn would overflow: emits the complete segments and keeps the tail buffered', async () => {
    const segmenter = new FixedSegmenter([drop(1)]);
    const { segments, state } = await run(deps(segmenter), [
      [compressed('t1', 4), compressed('t2', 4)],
      [compressed('t3', 4)],
    ]);
    assert.deepEqual(segmenter.calls, [[textOf('t1', 4), textOf('t2', 4)]], 'cut over the buffer before t3');
    assert.equal(segments.length, 1);
    const [segment] = segments;
    assert.deepEqual(ids(segment), ['t1']);
    assert.deepEqual(segment?.boundary, {
      reason: 'similarity_drop',
      similarity: 0.1,
      threshold: 0.2,
      note: '',
    });
    assert.equal(segment?.endOfSession, false);
    assert.equal(segment?.segmenterVersion, 'fixed-v1@buf10');
    assert.equal(segment?.scorerVersion, 'builtin@r0.6');
    assert.equal(segment?.tenantId, 'tenant-a');
    assert.equal(segment?.agentId, 'agent-7');
    assert.equal(segment?.sessionId, 'sess-1');
    const turn = segment?.turns[0];
    assert.equal(turn?.text, textOf('t1', 4), 'the compressed text');
    assert.equal(turn?.tokens, 4);
    assert.equal(turn?.zoneOffset, '+01:00');
    assert.equal(turn?.speaker, 'Ana');

    const buffer = bufferIn(state);
    assert.deepEqual(
      buffer?.turns.map((t) => t.turnId),
      ['t2', 't3'],
    );
    assert.equal(buffer?.countedTokens, 8);
  });

  it('with no boundaries the whole buffer is emitted as one buffer_full segment', async () => {
    const { segments, state } = await run(deps(new FixedSegmenter([])), [
      [compressed('t1', 4), compressed('t2', 4), compressed('t3', 4)],
    ]);
    assert.equal(segments.length, 1);
    assert.deepEqual(ids(segments[0]), ['t1', 't2']);
    assert.deepEqual(segments[0]?.boundary, {
      reason: 'buffer_full',
      similarity: null,
      threshold: null,
      note: '',
    });
    assert.deepEqual(
      bufferIn(state)?.turns.map((t) => t.turnId),
      ['t3'],
    );
  });

  it('emits the tail whole when it alone leaves no room for the next turn', async () => {
    // Cut after t1; the tail t2 (4) + t3 (8) = 12 > 10, so t2 goes out as well.
    const { segments, state } = await run(deps(new FixedSegmenter([drop(1)])), [
      [compressed('t1', 4), compressed('t2', 4), compressed('t3', 8)],
    ]);
    assert.deepEqual(segments.map(ids), [['t1'], ['t2']]);
    assert.equal(segments[1]?.boundary.reason, 'buffer_full');
    assert.deepEqual(
      bufferIn(state)?.turns.map((t) => t.turnId),
      ['t3'],
    );
  });

  it('assistant turns do not count toward the capacity', async () => {
    const segmenter = new FixedSegmenter([]);
    const { segments, state } = await run(deps(segmenter), [
      [
        compressed('t1', 4),
        compressed('t2', 50, { role: 'assistant', speaker: 'bot' }),
        compressed('t3', 4),
        compressed('t4', 50, { role: 'assistant', speaker: 'bot' }),
      ],
    ]);
    assert.deepEqual(segments, []);
    assert.equal(bufferIn(state)?.countedTokens, 8);
    assert.equal(bufferIn(state)?.turns.length, 4);

    // The next user turn overflows: the assistant turns go out with their user turns.
    const next = await run(deps(segmenter), [[compressed('t5', 4)]], state);
    assert.deepEqual(next.segments.map(ids), [['t1', 't2', 't3', 't4']]);
  });

  it('the counted roles are configurable (multi-party: customer and agent both count)', async () => {
    const { segments } = await run(deps(new FixedSegmenter([]), 10, ['customer', 'agent']), [
      [
        compressed('t1', 4, { role: 'customer' }),
        compressed('t2', 4, { role: 'agent' }),
        compressed('t3', 4, { role: 'customer' }),
      ],
    ]);
    assert.deepEqual(segments.map(ids), [['t1', 't2']]);
  });

  it('a session_end emits the rest with endOfSession and clears the buffer', async () => {
    const { segments, outputs, state } = await run(deps(new FixedSegmenter([])), [
      [compressed('t1', 3), compressed('t2', 3), control('session_end', 'end-1')],
    ]);
    assert.equal(segments.length, 1);
    assert.deepEqual(ids(segments[0]), ['t1', 't2']);
    assert.equal(segments[0]?.endOfSession, true);
    assert.equal(segments[0]?.boundary.reason, 'session_end');
    assert.equal(bufferIn(state), undefined);
    assert.deepEqual(outputs[0]?.state, [{ key: bufferKey, value: null }]);
  });

  it('a session_end cuts at the segmenter’s boundaries; only the last piece ends the session', async () => {
    const { segments } = await run(deps(new FixedSegmenter([drop(2)])), [
      [compressed('t1', 2), compressed('t2', 2), compressed('t3', 2), control('session_end', 'end-1')],
    ]);
    assert.deepEqual(segments.map(ids), [['t1', 't2'], ['t3']]);
    assert.deepEqual(
      segments.map((s) => [s.endOfSession, s.boundary.reason]),
      [
        [false, 'similarity_drop'],
        [true, 'session_end'],
      ],
    );
  });

  it('a session_end on an empty buffer emits an empty end-of-session segment', async () => {
    const { segments } = await run(deps(new FixedSegmenter([])), [[control('session_end', 'end-9')]]);
    assert.equal(segments.length, 1);
    assert.deepEqual(segments[0]?.turns, []);
    assert.equal(segments[0]?.endOfSession, true);
    assert.equal(segments[0]?.boundary.reason, 'session_end');
    assert.equal(segments[0]?.conversationId, 'conv-1');
  });

  it('a retry-extraction nudge flushes nothing: an empty segment goes on, the session and its buffer stay', async () => {
    const { segments, state } = await run(deps(new FixedSegmenter([])), [
      [
        compressed('t1', 3),
        control('flush', 'retry-extraction@123', { metadata: { reason: 'retry-extraction' } }),
      ],
    ]);
    assert.equal(segments.length, 1);
    assert.deepEqual(segments[0]?.turns, []);
    assert.equal(segments[0]?.endOfSession, false);
    assert.equal(segments[0]?.boundary.note, 'retry-extraction');
    assert.deepEqual(
      bufferIn(state)?.turns.map((t) => t.turnId),
      ['t1'],
      'the buffered turn is still buffered',
    );
  });

  it('a flush emits the rest with the flush reason', async () => {
    const { segments, state } = await run(deps(new FixedSegmenter([])), [
      [compressed('t1', 3), control('flush', 'flush-after:t1')],
    ]);
    assert.deepEqual(segments.map(ids), [['t1']]);
    assert.equal(segments[0]?.boundary.reason, 'flush');
    assert.equal(segments[0]?.endOfSession, true);
    assert.equal(bufferIn(state), undefined);
  });

  it('a turn of a new session flushes the old session first', async () => {
    const { segments, state } = await run(deps(new FixedSegmenter([])), [
      [compressed('t1', 3), compressed('t2', 3)],
      [compressed('t3', 3, { sessionId: 'sess-2' })],
    ]);
    assert.equal(segments.length, 1);
    assert.deepEqual(ids(segments[0]), ['t1', 't2']);
    assert.equal(segments[0]?.sessionId, 'sess-1');
    assert.equal(segments[0]?.endOfSession, true);
    assert.equal(segments[0]?.boundary.reason, 'session_end');
    const buffer = bufferIn(state);
    assert.equal(buffer?.sessionId, 'sess-2');
    assert.deepEqual(
      buffer?.turns.map((t) => t.turnId),
      ['t3'],
    );
    assert.equal(buffer?.countedTokens, 3);
  });

  it('keeps one buffer per conversation', async () => {
    const { segments, state } = await run(deps(new FixedSegmenter([])), [
      [
        compressed('t1', 4),
        compressed('u1', 4, { conversationId: 'conv-2' }),
        compressed('t2', 4),
        compressed('u2', 4, { conversationId: 'conv-2' }),
      ],
    ]);
    assert.deepEqual(segments, []);
    assert.equal(state.map.size, 2);
  });

  it('state round-trips: batch by batch gives the same segments as one batch', async () => {
    const turns = (): CompressedTurn[] => {
      receivedAt = T0;
      return [
        compressed('t1', 4),
        compressed('t2', 3, { role: 'assistant', speaker: 'bot' }),
        compressed('t3', 4),
        compressed('t4', 4),
        compressed('t5', 4),
        compressed('t6', 4),
        control('session_end', 'end-1'),
      ];
    };
    const segmenter = (): FixedSegmenter => new FixedSegmenter([drop(1)]);
    const all = turns();
    const oneBatch = await run(deps(segmenter()), [all]);
    const split = await run(
      deps(segmenter()),
      all.map((turn) => [turn]),
    );
    assert.ok(oneBatch.segments.length >= 3, `got ${oneBatch.segments.length} segments`);
    assert.deepEqual(split.segments, oneBatch.segments);
    assert.equal(split.state.map.size, 0);

    // Deterministic ids: the same input again gives the same ids; they differ between segments.
    const again = await run(deps(segmenter()), [turns()]);
    assert.deepEqual(
      again.segments.map((s) => s.segmentId),
      oneBatch.segments.map((s) => s.segmentId),
    );
    assert.equal(new Set(oneBatch.segments.map((s) => s.segmentId)).size, oneBatch.segments.length);
    for (const output of oneBatch.outputs) {
      for (const record of output.records) {
        assert.equal(record.dedupKey, (record.value as TopicSegment).segmentId);
        assert.equal(record.key, 'tenant-a/conv-1');
      }
    }

    // Another capacity (pipeline version) gives other ids for the same turns.
    const bigger = await run({ ...deps(segmenter()), capacityTokens: 11 }, [turns()]);
    const firstIds = new Set(oneBatch.segments.map((s) => s.segmentId));
    assert.ok(bigger.segments.every((s) => !firstIds.has(s.segmentId)));
  });

  it('the persisted buffer parses with its schema and carries the last turn and receive time', async () => {
    receivedAt = T0;
    const { state } = await run(deps(new FixedSegmenter([])), [[compressed('t1', 2), compressed('t2', 2)]]);
    const buffer = bufferIn(state);
    assert.equal(buffer?.lastTurnId, 't2');
    assert.equal(buffer?.lastReceivedAt, T0 + 2000);
    assert.equal(buffer?.scorerVersion, 'builtin@r0.6');
  });
});
