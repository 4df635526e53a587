import type { Segmenter } from '../core/ports/segmenter.js';
import type { TokenScorer } from '../core/ports/token-scorer.js';
import type { CompressedTurn, Role, TopicSegment } from '../core/model/generated.js';
import { Topics } from '../core/model/topics.js';
import { segmenterStage } from '../stages/segmenter/segmenter-stage.js';
import { InMemoryState } from '../stages/in-memory-state.js';
import { exchangeUnits } from '../stages/segmenter/similarity-segmenter.js';
import {
  compressTexts,
  type Compressed,
  type CompressionSettings,
} from '../stages/compressor/sensory-compressor.js';
import type { InputItem, TurnInput } from '../ingest/index.js';

export interface BoundaryCounts {
  predicted: number;
  gold: number;
  /** Predicted boundaries exactly at a gold one. */
  exact: number;
  /** Predicted boundaries within ±1 exchange of a gold one (each gold matched once). */
  nearby: number;
}

export interface BoundaryScores {
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
}

export function scores(matched: number, predicted: number, gold: number): BoundaryScores {
  const precision = predicted === 0 ? 0 : matched / predicted;
  const recall = gold === 0 ? 0 : matched / gold;
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  const round = (v: number): number => Math.round(v * 10_000) / 10_000;
  return { precision: round(precision), recall: round(recall), f1: round(f1) };
}

/** Matches predicted to gold boundaries (exchange indices): exact, and greedily within ±tolerance. */
export function countBoundaries(
  predicted: readonly number[],
  gold: readonly number[],
  tolerance = 1,
): BoundaryCounts {
  const goldSet = new Set(gold);
  const exact = predicted.filter((p) => goldSet.has(p)).length;
  const unmatched = new Set(gold);
  let nearby = 0;
  for (const p of predicted) {
    for (let d = 0; d <= tolerance; d++) {
      const hit = unmatched.has(p - d) ? p - d : unmatched.has(p + d) ? p + d : undefined;
      if (hit !== undefined) {
        unmatched.delete(hit);
        nearby++;
        break;
      }
    }
  }
  return { predicted: predicted.length, gold: gold.length, exact, nearby };
}

/** Turns of one user (one LongMemEval question), in order. */
export async function* streamsOf(items: AsyncIterable<InputItem>): AsyncGenerator<TurnInput[]> {
  let current: TurnInput[] = [];
  for await (const item of items) {
    if (!item.result.ok || item.result.event.kind !== 'turn') continue;
    const event = item.result.event;
    if (current.length > 0 && current[0]?.userId !== event.userId) {
      yield current;
      current = [];
    }
    current.push(event);
  }
  if (current.length > 0) yield current;
}

/** The compressor's output for each turn of a stream (the input `segmentStream` segments). */
export function compressStream(
  turns: readonly TurnInput[],
  scorer: TokenScorer,
  compression: CompressionSettings,
): Promise<Compressed[]> {
  return compressTexts(
    turns.map((t) => t.text),
    scorer,
    compression,
  );
}

/**
 * Feeds one user's sessions as a single stream through the segmenter stage (the sensory buffer with its
 * capacity, exactly as in the pipeline, but with no session-end cuts) and returns where segments start
 * (predicted boundaries) and where sessions start (gold), as exchange indices: an exchange is a human turn
 * with the replies to it, the unit segmenters cut at, so ±1 in `countBoundaries` means one exchange.
 */
export async function segmentStream(
  turns: readonly TurnInput[],
  segmenter: Segmenter,
  scorer: TokenScorer,
  settings: { compression: CompressionSettings; capacityTokens: number; countedRoles: ReadonlySet<Role> },
  /** The turns already compressed (`compressStream`), when several segmenters see the same stream. */
  precompressed?: readonly Compressed[],
): Promise<{ predicted: number[]; gold: number[] }> {
  const compressed = precompressed ?? (await compressStream(turns, scorer, settings.compression));
  const stage = segmenterStage({
    segmenter,
    capacityTokens: settings.capacityTokens,
    countedRoles: settings.countedRoles,
  });
  const state = new InMemoryState();
  const index = new Map(turns.map((t, i) => [t.turnId, i]));
  const records = turns.map((t, i) => {
    const value: CompressedTurn = {
      event: { ...t, sessionId: 'stream', receivedAt: 0 },
      compressedText: compressed[i]?.text ?? t.text,
      originalTokens: compressed[i]?.originalTokens ?? 0,
      keptTokens: compressed[i]?.keptTokens ?? 0,
      keepRatio: 1,
      scorerVersion: scorer.version,
    };
    return { topic: Topics.compressed, offset: i, key: 'stream', value, appendedAt: 0 };
  });
  const last = turns.at(-1);
  if (last !== undefined) {
    records.push({
      topic: Topics.compressed,
      offset: turns.length,
      key: 'stream',
      value: {
        event: {
          ...last,
          kind: 'session_end',
          turnId: 'end-of-stream',
          sessionId: 'stream',
          text: '',
          receivedAt: 0,
        },
        compressedText: '',
        originalTokens: 0,
        keptTokens: 0,
        keepRatio: 1,
        scorerVersion: scorer.version,
      },
      appendedAt: 0,
    });
  }
  const segments: TopicSegment[] = [];
  // One record at a time, as a stage with batch size 1 would see them (state carried between calls).
  for (const record of records) {
    const output = await stage([record], state);
    state.apply(output.state);
    for (const out of output.records) if (out.topic === Topics.segments) segments.push(out.value);
  }
  // Turn index → index of the exchange it belongs to.
  const exchangeOf: number[] = [];
  exchangeUnits(turns).forEach((unit, u) => {
    while (exchangeOf.length < unit.start) exchangeOf.push(u - 1);
    exchangeOf.push(u);
  });
  while (exchangeOf.length < turns.length) exchangeOf.push(exchangeOf.at(-1) ?? 0);
  const starts = segments
    .filter((s) => s.turns.length > 0)
    .map((s) => exchangeOf[index.get(s.turns[0]?.turnId ?? '') ?? -1] ?? -1)
    .filter((u) => u > 0);
  const gold = new Set<number>();
  turns.forEach((t, i) => {
    if (i > 0 && t.sessionId !== turns[i - 1]?.sessionId) gold.add(exchangeOf[i] ?? -1);
  });
  return { predicted: [...new Set(starts)].sort((a, b) => a - b), gold: [...gold].filter((u) => u > 0) };
}
