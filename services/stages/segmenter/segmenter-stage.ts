import type { BatchHandler, OutputRecord, StateReader, StateWrite } from '../../core/ports/event-log.js';
import type { Boundary, Segmenter } from '../../core/ports/segmenter.js';
import type {
  BoundaryEvidence,
  CompressedTurn,
  Role,
  SegmentTurn,
  TopicSegment,
} from '../../core/model/generated.js';
import { Topics, conversationKey } from '../../core/model/topics.js';
import { stableId } from '../../core/model/ids.js';
import { approxTokenCount } from '../../core/text/token-count.js';
import { summarizerNudges } from '../control-events.js';
import { conversationStateKey } from '../state-keys.js';
import { SensoryBufferState } from './sensory-buffer.js';

export interface SegmenterStageDeps {
  readonly segmenter: Segmenter;
  /** Sensory buffer capacity in tokens of the counted roles (LightMem: 512 tokens of user text). */
  readonly capacityTokens: number;
  readonly countedRoles: ReadonlySet<Role>;
}

export const sensoryStatePrefix = 'sensory';

export function segmenterVersion(deps: SegmenterStageDeps): string {
  return `${deps.segmenter.version}@buf${deps.capacityTokens}`;
}

/**
 * Light1b of LightMem: a persisted sensory buffer per conversation. When the next counted turn would
 * overflow it, the segmenter proposes topic boundaries and every complete segment is emitted; the tail
 * stays buffered. A session end (or flush) emits everything and marks the session closed downstream.
 */
export function segmenterStage(deps: SegmenterStageDeps): BatchHandler<typeof Topics.compressed> {
  const version = segmenterVersion(deps);

  function makeSegment(
    buffer: SensoryBufferState,
    turns: readonly SegmentTurn[],
    boundary: BoundaryEvidence,
    endOfSession: boolean,
    controlTurnId: string,
  ): OutputRecord {
    const idParts = turns.length > 0 ? turns.map((t) => t.turnId) : ['end-of-session', controlTurnId];
    const value: TopicSegment = {
      segmentId: stableId('seg', [
        buffer.tenantId,
        buffer.userId,
        buffer.conversationId,
        buffer.sessionId,
        version,
        ...idParts,
      ]),
      tenantId: buffer.tenantId,
      userId: buffer.userId,
      agentId: buffer.agentId,
      conversationId: buffer.conversationId,
      sessionId: buffer.sessionId,
      turns: [...turns],
      boundary,
      endOfSession,
      segmenterVersion: version,
      scorerVersion: buffer.scorerVersion,
    };
    return { topic: Topics.segments, key: conversationKey(buffer), value, dedupKey: value.segmentId };
  }

  function evidence(
    cut: Boundary | undefined,
    fallback: BoundaryEvidence['reason'],
    note = '',
  ): BoundaryEvidence {
    return cut === undefined
      ? { reason: fallback, similarity: null, threshold: null, note }
      : { reason: cut.reason, similarity: cut.similarity, threshold: cut.threshold, note };
  }

  /** Splits the buffer at the segmenter's boundaries; returns the complete segments and the tail. */
  async function cut(
    buffer: SensoryBufferState,
  ): Promise<{ pieces: { turns: SegmentTurn[]; cut: Boundary }[]; tail: SegmentTurn[] }> {
    const boundaries = (await deps.segmenter.boundaries(buffer.turns)).filter(
      (b) => b.index > 0 && b.index < buffer.turns.length,
    );
    const pieces: { turns: SegmentTurn[]; cut: Boundary }[] = [];
    let start = 0;
    for (const boundary of boundaries) {
      if (boundary.index <= start) continue;
      pieces.push({ turns: buffer.turns.slice(start, boundary.index), cut: boundary });
      start = boundary.index;
    }
    return { pieces, tail: buffer.turns.slice(start) };
  }

  function recount(buffer: SensoryBufferState): void {
    buffer.countedTokens = buffer.turns
      .filter((t) => deps.countedRoles.has(t.role))
      .reduce((sum, t) => sum + t.tokens, 0);
  }

  async function flushAll(
    buffer: SensoryBufferState,
    reason: 'session_end' | 'flush',
    controlTurnId: string,
    out: OutputRecord[],
  ): Promise<void> {
    if (buffer.turns.length > 0) {
      const { pieces, tail } = await cut(buffer);
      for (const piece of pieces)
        out.push(makeSegment(buffer, piece.turns, evidence(piece.cut, reason), false, controlTurnId));
      out.push(makeSegment(buffer, tail, evidence(undefined, reason), true, controlTurnId));
    } else {
      out.push(makeSegment(buffer, [], evidence(undefined, reason, 'empty buffer'), true, controlTurnId));
    }
    buffer.turns = [];
    buffer.countedTokens = 0;
  }

  async function load(state: StateReader, key: string, cache: Map<string, SensoryBufferState | null>) {
    if (cache.has(key)) return cache.get(key) ?? null;
    const raw = await state.get(key);
    const buffer = raw === undefined ? null : SensoryBufferState.parse(JSON.parse(raw));
    cache.set(key, buffer);
    return buffer;
  }

  return async (records, state) => {
    const out: OutputRecord[] = [];
    const cache = new Map<string, SensoryBufferState | null>();
    for (const { value } of records) {
      const turn: CompressedTurn = value;
      const event = turn.event;
      const key = conversationStateKey(sensoryStatePrefix, event);
      let buffer = await load(state, key, cache);
      const reason = event.metadata['reason'];
      if (event.kind === 'flush' && reason !== undefined && summarizerNudges.includes(reason)) {
        // A nudge for the summarizer's deferred batches: passed on as an empty segment, nothing flushed.
        out.push(
          makeSegment(
            buffer ?? freshBuffer(turn),
            [],
            evidence(undefined, 'flush', reason),
            false,
            event.turnId,
          ),
        );
        continue;
      }
      if (event.kind !== 'turn') {
        await flushAll(
          buffer ?? freshBuffer(turn),
          event.kind === 'flush' ? 'flush' : 'session_end',
          event.turnId,
          out,
        );
        cache.set(key, null);
        continue;
      }
      if (buffer !== null && buffer.sessionId !== event.sessionId && buffer.turns.length > 0) {
        // A new session began without an explicit end: close the previous one first.
        await flushAll(buffer, 'session_end', `implicit:${event.turnId}`, out);
      }
      if (buffer === null || buffer.turns.length === 0) buffer = freshBuffer(turn);
      const segmentTurn: SegmentTurn = {
        turnId: event.turnId,
        seq: event.seq,
        role: event.role,
        speaker: event.speaker,
        text: turn.compressedText,
        tokens: approxTokenCount(turn.compressedText),
        occurredAt: event.occurredAt,
        zoneOffset: event.zoneOffset,
        sourceText: turn.compressedText === event.text ? null : event.text,
      };
      const counted = deps.countedRoles.has(segmentTurn.role);
      if (
        counted &&
        buffer.countedTokens > 0 &&
        buffer.countedTokens + segmentTurn.tokens > deps.capacityTokens
      ) {
        const { pieces, tail } = await cut(buffer);
        if (pieces.length === 0) {
          out.push(
            makeSegment(buffer, buffer.turns, evidence(undefined, 'buffer_full'), false, event.turnId),
          );
          buffer.turns = [];
        } else {
          for (const piece of pieces)
            out.push(
              makeSegment(buffer, piece.turns, evidence(piece.cut, 'buffer_full'), false, event.turnId),
            );
          buffer.turns = tail;
        }
        recount(buffer);
        if (buffer.countedTokens > 0 && buffer.countedTokens + segmentTurn.tokens > deps.capacityTokens) {
          // The tail alone still leaves no room: emit it whole.
          out.push(
            makeSegment(
              buffer,
              buffer.turns,
              evidence(undefined, 'buffer_full', 'tail emitted whole'),
              false,
              event.turnId,
            ),
          );
          buffer.turns = [];
          buffer.countedTokens = 0;
        }
      }
      buffer.turns.push(segmentTurn);
      if (counted) buffer.countedTokens += segmentTurn.tokens;
      buffer.lastTurnId = event.turnId;
      buffer.lastReceivedAt = event.receivedAt;
      buffer.scorerVersion = turn.scorerVersion;
      cache.set(key, buffer);
    }
    const writes: StateWrite[] = [...cache.entries()].map(([key, buffer]) => ({
      key,
      value: buffer === null || buffer.turns.length === 0 ? null : JSON.stringify(buffer),
    }));
    return { records: out, state: writes };
  };
}

function freshBuffer(turn: CompressedTurn): SensoryBufferState {
  const event = turn.event;
  return {
    tenantId: event.tenantId,
    userId: event.userId,
    agentId: event.agentId,
    conversationId: event.conversationId,
    sessionId: event.sessionId,
    scorerVersion: turn.scorerVersion,
    countedTokens: 0,
    lastTurnId: event.turnId,
    lastReceivedAt: event.receivedAt,
    turns: [],
  };
}
