import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  ExtractiveExtractor,
  type ExtractiveGranularity,
} from '../../services/stages/summarizer/extractive-extractor.js';
import {
  summarizerStage,
  stmStatePrefix,
  type SummarizerStageDeps,
} from '../../services/stages/summarizer/summarizer-stage.js';
import { StmBufferState } from '../../services/stages/summarizer/stm-buffer.js';
import { compressorStage } from '../../services/stages/compressor/compressor-stage.js';
import { BuiltinTokenScorer } from '../../services/stages/compressor/builtin-token-scorer.js';
import { segmenterStage } from '../../services/stages/segmenter/segmenter-stage.js';
import { SessionSegmenter } from '../../services/stages/segmenter/session-segmenter.js';
import { conversationStateKey } from '../../services/stages/state-keys.js';
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { idleFlushJob } from '../../workflows/idle-flush.js';
import type {
  CompressedTurn,
  DeadLetter,
  ConversationEvent,
  MemoryEntry,
  Role,
  SegmentTurn,
  TopicSegment,
} from '../../services/core/model/generated.js';
import { Topics, conversationKey, type TopicName } from '../../services/core/model/topics.js';
import type { BatchHandler, EventLog, LogRecord, StageOutput } from '../../services/core/ports/event-log.js';
import type { Extractor } from '../../services/core/ports/extractor.js';
import { InMemoryState } from '../../services/stages/in-memory-state.js';
import { silentLogger } from '../support/memory-logger.js';

const T0 = Date.UTC(2025, 0, 1);
const NOW = T0 + 86_400_000;
const clock = { now: () => NOW };

type TurnSpec = { id: string; tokens: number; role?: Role; speaker?: string; at?: number; text?: string };

function segmentTurn(spec: TurnSpec): SegmentTurn {
  return {
    turnId: spec.id,
    seq: Number(spec.id.replace(/\D/g, '')) || 0,
    role: spec.role ?? 'user',
    speaker: spec.speaker ?? 'Ana',
    text: spec.text ?? `text of ${spec.id}`,
    sourceText: null,
    tokens: spec.tokens,
    occurredAt: spec.at ?? T0 + (Number(spec.id.replace(/\D/g, '')) || 0) * 60_000,
    zoneOffset: '+02:00',
  };
}

function segment(
  segmentId: string,
  turns: readonly TurnSpec[],
  overrides: Partial<TopicSegment> = {},
): TopicSegment {
  return {
    segmentId,
    tenantId: 'tenant-a',
    userId: 'user-1',
    agentId: 'agent-7',
    conversationId: 'conv-1',
    sessionId: 'sess-1',
    turns: turns.map(segmentTurn),
    boundary: { reason: 'similarity_drop', similarity: 0.1, threshold: 0.2, note: '' },
    endOfSession: false,
    segmenterVersion: 'similarity-v1@buf512',
    scorerVersion: 'builtin@r0.6',
    ...overrides,
  };
}

function asRecords(values: readonly TopicSegment[]): LogRecord<typeof Topics.segments>[] {
  return values.map((value, offset) => ({
    topic: Topics.segments,
    offset,
    key: `${value.tenantId}/${value.conversationId}`,
    value,
    appendedAt: T0 + offset,
  }));
}

function deps(
  overrides: Partial<SummarizerStageDeps> & { granularity?: ExtractiveGranularity; memorize?: Role[] } = {},
): SummarizerStageDeps {
  const { granularity = 'turn', memorize = ['user'], ...rest } = overrides;
  return {
    extractor: new ExtractiveExtractor({ memorizeRoles: new Set(memorize), granularity, splitWords: 0 }),
    thresholdTokens: 10,
    countedRoles: new Set<Role>(['user']),
    embedderId: 'test-embedder',
    clock,
    ...rest,
  };
}

function memoriesOf(output: StageOutput): MemoryEntry[] {
  return output.records.map((record) => {
    assert.equal(record.topic, Topics.memories);
    assert.equal(record.dedupKey, record.value.id);
    return record.value;
  });
}

async function run(
  stageDeps: SummarizerStageDeps,
  batches: readonly (readonly TopicSegment[])[],
  state = new InMemoryState(),
): Promise<{ memories: MemoryEntry[]; perBatch: MemoryEntry[][]; state: InMemoryState }> {
  const stage = summarizerStage(stageDeps);
  const perBatch: MemoryEntry[][] = [];
  for (const batch of batches) {
    const output = await stage(asRecords(batch), state);
    state.apply(output.state);
    perBatch.push(memoriesOf(output));
  }
  return { memories: perBatch.flat(), perBatch, state };
}

const stmKey = conversationStateKey(stmStatePrefix, {
  tenantId: 'tenant-a',
  userId: 'user-1',
  conversationId: 'conv-1',
});

function stmIn(state: InMemoryState): StmBufferState | undefined {
  const raw = state.map.get(stmKey);
  return raw === undefined ? undefined : StmBufferState.parse(JSON.parse(raw));
}

const sources = (memories: readonly MemoryEntry[]): string[][] => memories.map((m) => m.sourceTurnIds);

describe('summarizerStage with the ExtractiveExtractor', () => {
  it('buffers segments until th would be exceeded, then extracts the buffered batch', async () => {
    const s1 = segment('seg-1', [{ id: 't1', tokens: 4 }]);
    const s2 = segment('seg-2', [{ id: 't2', tokens: 4 }]);
    const s3 = segment('seg-3', [{ id: 't3', tokens: 4 }]);
    const { perBatch, state } = await run(deps(), [[s1, s2], [s3]]);
    assert.deepEqual(perBatch[0], [], '4 + 4 fits th = 10');
    assert.deepEqual(sources(perBatch[1] ?? []), [['t1'], ['t2']], 's3 would make 12 > 10');
    const buffer = stmIn(state);
    assert.deepEqual(
      buffer?.segments.map((s) => s.segmentId),
      ['seg-3'],
    );
    assert.equal(buffer?.tokens, 4);
  });

  it('a segment that brings the buffer to exactly th still fits', async () => {
    const s1 = segment('seg-1', [{ id: 't1', tokens: 4 }]);
    const s2 = segment('seg-2', [{ id: 't2', tokens: 6 }]);
    const { memories, state } = await run(deps(), [[s1, s2]]);
    assert.deepEqual(memories, []);
    assert.equal(stmIn(state)?.tokens, 10);
  });

  it('a segment that alone exceeds th is buffered (and extracted with the next overflow or session end)', async () => {
    const big = segment('seg-big', [{ id: 't1', tokens: 25 }]);
    const { perBatch, state } = await run(deps(), [[big], [segment('seg-2', [{ id: 't2', tokens: 1 }])]]);
    assert.deepEqual(perBatch[0], []);
    assert.deepEqual(sources(perBatch[1] ?? []), [['t1']]);
    assert.deepEqual(
      stmIn(state)?.segments.map((s) => s.segmentId),
      ['seg-2'],
    );
  });

  it('only the counted roles count toward th', async () => {
    const s1 = segment('seg-1', [
      { id: 't1', tokens: 4 },
      { id: 't2', tokens: 40, role: 'assistant', speaker: 'bot' },
    ]);
    const s2 = segment('seg-2', [{ id: 't3', tokens: 4 }]);
    const { memories, state } = await run(deps(), [[s1, s2]]);
    assert.deepEqual(memories, []);
    assert.equal(stmIn(state)?.tokens, 8);
  });

  it('endOfSession flushes the buffer, also through an empty end-of-session segment', async () => {
    const s1 = segment('seg-1', [{ id: 't1', tokens: 2 }]);
    const s2 = segment('seg-2', [{ id: 't2', tokens: 2 }], {
      endOfSession: true,
      boundary: { reason: 'session_end', similarity: null, threshold: null, note: '' },
    });
    const withTurns = await run(deps(), [[s1, s2]]);
    assert.deepEqual(sources(withTurns.memories), [['t1'], ['t2']]);
    assert.equal(stmIn(withTurns.state), undefined, 'buffer cleared');

    const empty = segment('seg-end', [], { endOfSession: true });
    const viaEmpty = await run(deps(), [[s1], [empty]]);
    assert.deepEqual(viaEmpty.perBatch[0], []);
    assert.deepEqual(sources(viaEmpty.perBatch[1] ?? []), [['t1']]);
    assert.equal(stmIn(viaEmpty.state), undefined);

    // An empty end of session with nothing buffered produces nothing.
    const nothing = await run(deps(), [[empty]]);
    assert.deepEqual(nothing.memories, []);
  });

  it('memories carry the scope, speaker, times, source turns and topic of their turns', async () => {
    const s1 = segment('seg-1', [
      { id: 't1', tokens: 2, speaker: 'Ana', at: T0 + 1000, text: 'I moved to Lisbon' },
      { id: 't2', tokens: 2, speaker: 'Bruno', at: T0 + 2000, text: 'I adopted a cat' },
    ]);
    const s2 = segment(
      'seg-2',
      [{ id: 't3', tokens: 2, speaker: 'Ana', at: T0 + 3000, text: 'I start a new job' }],
      {
        endOfSession: true,
        scorerVersion: 'builtin@r0.6',
      },
    );
    const { memories } = await run(deps(), [[s1, s2]]);
    assert.equal(memories.length, 3);
    const [m1, m2, m3] = memories;
    assert.deepEqual(
      {
        text: m1?.text,
        kind: m1?.kind,
        speaker: m1?.speaker,
        occurredAt: m1?.occurredAt,
        validFrom: m1?.validFrom,
        zoneOffset: m1?.zoneOffset,
        sourceTurnIds: m1?.sourceTurnIds,
        topicId: m1?.topicId,
      },
      {
        text: 'I moved to Lisbon',
        kind: 'fact',
        speaker: 'Ana',
        occurredAt: T0 + 1000,
        validFrom: T0 + 1000,
        zoneOffset: '+02:00',
        sourceTurnIds: ['t1'],
        topicId: 'seg-1',
      },
    );
    assert.equal(m2?.speaker, 'Bruno');
    assert.equal(m2?.occurredAt, T0 + 2000);
    assert.equal(m2?.topicId, 'seg-1');
    assert.equal(m3?.topicId, 'seg-2');
    assert.equal(m3?.occurredAt, T0 + 3000);
    for (const memory of memories) {
      assert.equal(memory.tenantId, 'tenant-a');
      assert.equal(memory.userId, 'user-1');
      assert.equal(memory.agentId, 'agent-7');
      assert.equal(memory.conversationId, 'conv-1');
      assert.equal(memory.sessionId, 'sess-1');
      assert.equal(memory.ingestedAt, NOW);
      assert.equal(memory.validTo, null);
      assert.equal(memory.supersededBy, null);
      assert.deepEqual(memory.pipeline, {
        scorer: 'builtin@r0.6',
        segmenter: 'similarity-v1@buf512',
        extractor: 'extractive-v1(turn;user)@th10',
        promptHash: null,
        embedder: 'test-embedder',
      });
    }
    const stage = summarizerStage(deps());
    const output = await stage(asRecords([s1, s2]), new InMemoryState());
    assert.ok(output.records.every((record) => record.key === 'tenant-a/user-1'));
  });

  it('memory ids are deterministic and change with the pipeline version', async () => {
    const batch = (scorerVersion = 'builtin@r0.6'): TopicSegment[] => [
      segment(
        'seg-1',
        [
          { id: 't1', tokens: 2 },
          { id: 't2', tokens: 2 },
        ],
        { scorerVersion },
      ),
      segment('seg-2', [{ id: 't3', tokens: 2 }], { endOfSession: true, scorerVersion }),
    ];
    const ids = async (stageDeps: SummarizerStageDeps, segments: TopicSegment[]): Promise<string[]> =>
      (await run(stageDeps, [segments])).memories.map((m) => m.id);

    const base = await ids(deps(), batch());
    assert.equal(base.length, 3);
    assert.equal(new Set(base).size, 3, 'one id per memory');
    assert.deepEqual(await ids(deps(), batch()), base, 'same input, same ids');
    // Batch by batch gives the same ids as one batch (state round-trips).
    const split = await run(
      deps(),
      batch().map((s) => [s]),
    );
    assert.deepEqual(
      split.memories.map((m) => m.id),
      base,
    );

    const other = (list: string[]): boolean =>
      list.length === base.length && list.every((id) => !base.includes(id));
    assert.ok(other(await ids(deps(), batch('builtin@r0.8'))), 'another compression rate');
    assert.ok(other(await ids(deps({ thresholdTokens: 20 }), batch())), 'another th');
    assert.ok(other(await ids(deps({ embedderId: 'other-embedder' }), batch())), 'another embedder');
    assert.ok(
      other(
        await ids(
          deps(),
          batch().map((s) => ({ ...s, segmenterVersion: 'similarity-v1@buf256' })),
        ),
      ),
      'another segmenter',
    );
    // Another tenant's identical turns get other ids.
    assert.ok(
      other(
        await ids(
          deps(),
          batch().map((s) => ({ ...s, tenantId: 'tenant-b' })),
        ),
      ),
      'another tenant',
    );
  });

  it('gives distinct, stable ids to several memories an extractor takes from the same turns', async () => {
    // An LLM extractor finds two facts in one message.
    const twoFacts: Extractor = {
      version: 'scripted-llm-v1',
      promptHash: 'abc123',
      extract: (batch) =>
        Promise.resolve({
          memories: ['Ana moved to Lisbon', 'Ana has a cat'].map((text) => ({
            text,
            kind: 'fact' as const,
            topicId: batch[0]?.segmentId ?? '',
            speaker: 'Ana',
            sourceTurnIds: ['t1'],
            occurredAt: T0,
            zoneOffset: '+00:00',
          })),
          problems: [],
        }),
    };
    const batch = [segment('seg-1', [{ id: 't1', tokens: 2 }], { endOfSession: true })];
    const first = await run(deps({ extractor: twoFacts }), [batch]);
    assert.deepEqual(
      first.memories.map((m) => m.text),
      ['Ana moved to Lisbon', 'Ana has a cat'],
    );
    assert.equal(new Set(first.memories.map((m) => m.id)).size, 2, 'one id per fact');
    assert.equal(first.memories[0]?.pipeline.promptHash, 'abc123');
    const again = await run(deps({ extractor: twoFacts }), [batch]);
    assert.deepEqual(
      again.memories.map((m) => m.id),
      first.memories.map((m) => m.id),
    );
  });

  it('dead-letters what an extractor could not use (an unusable LLM answer), beside the memories it made', async () => {
    const troubled: Extractor = {
      version: 'scripted-llm-v1',
      promptHash: 'abc123',
      extract: (batch) =>
        Promise.resolve({
          memories: [
            {
              text: 'Ana moved to Lisbon',
              kind: 'fact' as const,
              topicId: batch[0]?.segmentId ?? '',
              speaker: 'Ana',
              sourceTurnIds: ['t1'],
              occurredAt: T0,
              zoneOffset: '+00:00',
            },
          ],
          problems: [{ reason: 'LLM answer unusable after a repair request', payload: '{"data": [' }],
        }),
    };
    const stage = summarizerStage(deps({ extractor: troubled }));
    const records = asRecords([segment('seg-1', [{ id: 't1', tokens: 2 }], { endOfSession: true })]);
    const output = await stage(records, new InMemoryState());
    assert.equal(output.records.filter((r) => r.topic === Topics.memories).length, 1);
    const letters = output.records.filter((r) => r.topic === Topics.deadLetters);
    assert.equal(letters.length, 1);
    const letter = letters[0]?.value as DeadLetter;
    assert.equal(letter.stage, 'summarizer');
    assert.equal(letter.field, 'llm.answer');
    assert.equal(letter.sourceTopic, Topics.segments);
    assert.equal(letter.sourceOffset, records[0]?.offset);
    assert.match(letter.reason, /unusable after a repair request \(batch of 1 segments, seg-1\)/);
    assert.equal(letter.payload, '{"data": [');
  });

  it('flushAtSessionEnd false: batches span sessions (LightMem); a flush or a flush-stm nudge extracts the rest', async () => {
    const batches: string[][] = [];
    const recording: Extractor = {
      version: 'recording-v1',
      promptHash: null,
      extract: (batch) => {
        batches.push(batch.map((s) => s.segmentId));
        return Promise.resolve({ memories: [], problems: [] });
      },
    };
    const spanning = deps({ extractor: recording, flushAtSessionEnd: false });
    const ended = {
      endOfSession: true,
      boundary: { reason: 'session_end' as const, similarity: null, threshold: null, note: '' },
    };
    const state = new InMemoryState();
    await run(
      spanning,
      [
        [
          segment('s1', [{ id: 't1', tokens: 3 }], ended),
          segment('s2', [{ id: 't2', tokens: 3 }], { ...ended, sessionId: 'sess-2' }),
        ],
      ],
      state,
    );
    assert.deepEqual(batches, [], 'session ends do not extract: the buffer spans both sessions');
    // th (10) overflows with the next session's segment: the two earlier sessions go as one batch.
    await run(spanning, [[segment('s3', [{ id: 't3', tokens: 6 }], { sessionId: 'sess-3' })]], state);
    assert.deepEqual(batches, [['s1', 's2']]);
    // A flush-stm nudge (an empty segment from the summarizer-nudges job) extracts what is buffered.
    const nudge = segment('nudge', [], {
      boundary: { reason: 'flush', similarity: null, threshold: null, note: 'flush-stm' },
    });
    await run(spanning, [[nudge]], state);
    assert.deepEqual(batches, [['s1', 's2'], ['s3']]);
    // And a flush (end of a file's input, idle) extracts at the end of a session.
    await run(
      spanning,
      [
        [
          segment('s4', [{ id: 't4', tokens: 2 }], {
            endOfSession: true,
            boundary: { reason: 'flush', similarity: null, threshold: null, note: '' },
          }),
        ],
      ],
      state,
    );
    assert.deepEqual(batches.at(-1), ['s4']);
    assert.deepEqual(await state.keys(''), [], 'nothing left buffered');
  });

  it("granularity 'segment' makes one summary per segment", async () => {
    const s1 = segment('seg-1', [
      { id: 't1', tokens: 2, speaker: 'Ana', at: T0 + 1000, text: 'my order is late' },
      { id: 't2', tokens: 2, speaker: 'Bruno', at: T0 + 2000, text: 'order 1234 ships today' },
    ]);
    const s2 = segment('seg-2', [{ id: 't3', tokens: 2, speaker: 'Ana', text: 'thanks' }], {
      endOfSession: true,
    });
    const { memories } = await run(deps({ granularity: 'segment' }), [[s1, s2]]);
    assert.equal(memories.length, 2);
    const [summary] = memories;
    assert.equal(summary?.kind, 'summary');
    assert.equal(summary?.text, 'Ana: my order is late\nBruno: order 1234 ships today');
    assert.equal(summary?.speaker, 'Ana, Bruno');
    assert.deepEqual(summary?.sourceTurnIds, ['t1', 't2']);
    assert.equal(summary?.occurredAt, T0 + 1000);
    assert.equal(summary?.topicId, 'seg-1');
    assert.equal(memories[1]?.topicId, 'seg-2');
    assert.match(summary?.pipeline.extractor ?? '', /^extractive-v1\(segment;user\)@th10$/);
  });

  it("granularity 'both' makes the turn facts and the segment summary", async () => {
    const s1 = segment(
      'seg-1',
      [
        { id: 't1', tokens: 2 },
        { id: 't2', tokens: 2 },
      ],
      { endOfSession: true },
    );
    const { memories } = await run(deps({ granularity: 'both' }), [[s1]]);
    assert.deepEqual(
      memories.map((m) => [m.kind, m.sourceTurnIds]),
      [
        ['fact', ['t1']],
        ['fact', ['t2']],
        ['summary', ['t1', 't2']],
      ],
    );
    assert.equal(new Set(memories.map((m) => m.id)).size, 3);
  });

  it('memorizeRoles excludes the other roles', async () => {
    const s1 = segment(
      'seg-1',
      [
        { id: 't1', tokens: 2, text: 'I am allergic to peanuts' },
        { id: 't2', tokens: 2, role: 'assistant', speaker: 'bot', text: 'Noted, no peanuts.' },
        { id: 't3', tokens: 2, role: 'system', speaker: 'sys', text: 'system prompt leak' },
      ],
      { endOfSession: true },
    );
    const userOnly = await run(deps({ granularity: 'both' }), [[s1]]);
    assert.deepEqual(
      userOnly.memories.map((m) => m.text),
      ['I am allergic to peanuts', 'Ana: I am allergic to peanuts'],
    );
    assert.ok(
      userOnly.memories.every((m) => !m.sourceTurnIds.includes('t2') && !m.sourceTurnIds.includes('t3')),
    );

    const withAssistant = await run(deps({ memorize: ['user', 'assistant'] }), [[s1]]);
    assert.deepEqual(sources(withAssistant.memories), [['t1'], ['t2']]);

    // A segment with no memorized turn (or only blank ones) gives no memory.
    const assistantOnly = segment(
      'seg-2',
      [
        { id: 't4', tokens: 2, role: 'assistant', speaker: 'bot' },
        { id: 't5', tokens: 2, text: '   ' },
      ],
      {
        endOfSession: true,
      },
    );
    assert.deepEqual((await run(deps({ granularity: 'both' }), [[assistantOnly]])).memories, []);
  });

  it('keeps one STM buffer per conversation', async () => {
    const a = segment('seg-a', [{ id: 't1', tokens: 6 }]);
    const b = segment('seg-b', [{ id: 'u1', tokens: 6 }], { conversationId: 'conv-2' });
    const { memories, state } = await run(deps(), [[a, b]]);
    assert.deepEqual(memories, [], 'each conversation holds 6 ≤ 10 tokens');
    assert.equal(state.map.size, 2);
  });
});

// ---------------------------------------------------------------------------------------------------------

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function openLog(): SqliteEventLog {
  const dir = mkdtempSync(join(tmpdir(), 'lightmem-idle-flush-'));
  tempDirs.push(dir);
  return SqliteEventLog.open(join(dir, 'events.db'), {
    logger: silentLogger,
    clock: { now: () => Date.now() },
    pollIntervalMs: 10,
    retryBaseMs: 5,
    retryMaxMs: 20,
  });
}

async function consumeAll<T extends TopicName>(
  log: EventLog,
  group: string,
  topic: T,
  handler: BatchHandler<T>,
): Promise<void> {
  const target = await log.endOffset(topic);
  const controller = new AbortController();
  const running = log.consume({ group, topic, signal: controller.signal }, handler);
  try {
    const deadline = Date.now() + 10_000;
    while ((await log.committedOffset(group, topic)) < target) {
      if (Date.now() > deadline) throw new Error(`${group} did not reach offset ${target}`);
      await delay(5);
    }
  } finally {
    controller.abort();
    await running;
  }
}

function rawTurn(conversationId: string, turnId: string, receivedAt: number): ConversationEvent {
  return {
    kind: 'turn',
    tenantId: 'tenant-a',
    userId: 'user-1',
    agentId: null,
    conversationId,
    sessionId: 'sess-1',
    turnId,
    seq: Number(turnId.replace(/\D/g, '')) || 0,
    role: 'user',
    speaker: 'Ana',
    text: `I told you about ${turnId} in ${conversationId}`,
    occurredAt: receivedAt,
    zoneOffset: '+00:00',
    receivedAt,
    metadata: {},
  };
}

function compressedOf(event: ConversationEvent): CompressedTurn {
  return {
    event,
    compressedText: event.text,
    originalTokens: 6,
    keptTokens: 6,
    keepRatio: 1,
    scorerVersion: 'none',
  };
}

describe('idle-flush job', () => {
  const idleMs = 60_000;
  const segmenter = segmenterStage({
    segmenter: new SessionSegmenter(),
    capacityTokens: 512,
    countedRoles: new Set(['user']),
  });

  async function setUp(log: SqliteEventLog): Promise<void> {
    // conv-old went quiet at T0 + 2 s; conv-fresh had a turn at T0 + 50 s.
    const turns = [
      rawTurn('conv-old', 't1', T0 + 1000),
      rawTurn('conv-old', 't2', T0 + 2000),
      rawTurn('conv-fresh', 't1', T0 + 50_000),
    ];
    await log.append(
      Topics.compressed,
      turns.map((event) => ({ key: conversationKey(event), value: compressedOf(event) })),
    );
    await consumeAll(log, 'segmenter', Topics.compressed, segmenter);
    assert.equal((await log.stateOf('segmenter').keys('')).length, 2, 'two buffered conversations');
  }

  it('appends one flush event for a buffer older than idleMs, once, and leaves a fresh buffer alone', async () => {
    const log = openLog();
    try {
      await setUp(log);
      const job = idleFlushJob(log, { idleMs, intervalMs: 1000 });
      const now = T0 + 61_000; // conv-old has been quiet for 59 s
      await job.run({ now, signal: new AbortController().signal });
      assert.equal(await log.endOffset(Topics.raw), 0, 'conv-old has been quiet for 59 s only');

      const later = T0 + 62_000; // conv-old quiet for exactly 60 s, conv-fresh for 12 s
      await job.run({ now: later, signal: new AbortController().signal });
      const flushes = await log.read(Topics.raw, 0, 10);
      assert.equal(flushes.length, 1);
      const [flush] = flushes;
      assert.equal(flush?.key, 'tenant-a/conv-old');
      assert.equal(flush?.value.kind, 'flush');
      assert.equal(flush?.value.conversationId, 'conv-old');
      assert.equal(flush?.value.userId, 'user-1');
      assert.equal(flush?.value.sessionId, 'sess-1');
      assert.equal(flush?.value.turnId, 'flush-after:t2');
      assert.equal(flush?.value.occurredAt, later);

      // Running again (the flush not yet consumed) appends nothing new.
      await job.run({ now: later + 30_000, signal: new AbortController().signal });
      assert.equal(await log.endOffset(Topics.raw), 1);

      // conv-fresh gets its own flush only once it has been quiet long enough.
      await job.run({ now: T0 + 110_000, signal: new AbortController().signal });
      const all = await log.read(Topics.raw, 0, 10);
      assert.deepEqual(
        all.map((r) => [r.key, r.value.turnId]),
        [
          ['tenant-a/conv-old', 'flush-after:t2'],
          ['tenant-a/conv-fresh', 'flush-after:t1'],
        ],
      );
    } finally {
      await log.close();
    }
  });

  it('the flush, run through the compressor and segmenter, emits the buffer and empties it', async () => {
    const log = openLog();
    try {
      await setUp(log);
      const job = idleFlushJob(log, { idleMs, intervalMs: 1000 });
      await job.run({ now: T0 + 62_000, signal: new AbortController().signal });
      await consumeAll(
        log,
        'compressor',
        Topics.raw,
        compressorStage({
          scorer: new BuiltinTokenScorer(),
          settings: { rate: 1, maxTokens: 512, recompressRate: 0.5 },
        }),
      );
      await consumeAll(log, 'segmenter', Topics.compressed, segmenter);

      const segments = await log.read(Topics.segments, 0, 10);
      assert.equal(segments.length, 1);
      assert.equal(segments[0]?.value.conversationId, 'conv-old');
      assert.equal(segments[0]?.value.boundary.reason, 'flush');
      assert.equal(segments[0]?.value.endOfSession, true);
      assert.deepEqual(
        segments[0]?.value.turns.map((t) => t.turnId),
        ['t1', 't2'],
      );
      const keys = await log.stateOf('segmenter').keys('');
      assert.equal(keys.length, 1, 'only conv-fresh is still buffered');

      // Nothing left to flush for conv-old.
      await job.run({ now: T0 + 70_000, signal: new AbortController().signal });
      assert.equal(await log.endOffset(Topics.raw), 1);
    } finally {
      await log.close();
    }
  });
});
