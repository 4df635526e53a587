import type { Embedder } from '../core/ports/embedder.js';
import type {
  AttentionModel,
  Boundary,
  SegmentableTurn,
  Segmenter,
  SentenceAttention,
} from '../core/ports/segmenter.js';
import type { Role } from '../core/model/generated.js';
import type { TokenScorer } from '../core/ports/token-scorer.js';
import type { TurnInput } from '../ingest/index.js';
import type { CompressionSettings } from '../stages/compressor/sensory-compressor.js';
import { attentionPeaks, sentenceAttention } from '../stages/segmenter/attention-boundaries.js';
import { hybridCuts } from '../stages/segmenter/hybrid-segmenter.js';
import { exchangeUnits, type ExchangeUnit } from '../stages/segmenter/similarity-segmenter.js';
import { compressStream, countBoundaries, segmentStream, type BoundaryCounts } from './segment-bench.js';
import type { SegmentSetting } from './segment-cv.js';

/**
 * The signals of one stream's buffers, computed once and shared by every setting of a grid: attention per
 * distinct sequence of human turns (and its peaks per sink size), vectors per distinct unit text. A
 * setting's boundaries in a buffer are then `hybridCuts` over these, the same function the segmenter runs.
 */
export class StreamSignals {
  private readonly attentionMemo = new Map<string, Promise<SentenceAttention>>();
  private readonly peaksMemo = new Map<string, number[]>();
  private readonly vectorMemo = new Map<string, Float32Array>();
  /** Model work done (attention sequences, embedded texts, and the time each took), for the report. */
  readonly calls = { attention: 0, embedded: 0, attentionMs: 0, embeddingMs: 0 };

  constructor(
    private readonly attention: AttentionModel,
    private readonly embedder: Embedder,
  ) {}

  /** Each setting's boundaries in this buffer (same order as `settings`). */
  async cuts(turns: readonly SegmentableTurn[], settings: readonly SegmentSetting[]): Promise<Boundary[][]> {
    const wordsNeeded = new Set(settings.filter((s) => s.rule !== 'attention').map((s) => s.unitWords));
    const sinksNeeded = new Set(settings.filter((s) => s.rule !== 'similarity').map((s) => s.sinkTokens));
    const unitsByWords = new Map<number, ExchangeUnit[]>();
    const units = (words: number): ExchangeUnit[] => {
      let found = unitsByWords.get(words);
      if (found === undefined) unitsByWords.set(words, (found = exchangeUnits(turns, words)));
      return found;
    };
    const leadUnits = units(0);
    if (leadUnits.length < 2) return settings.map(() => []);
    const vectors = new Map<number, Float32Array[]>();
    const peaks = new Map<number, number[]>();
    const leads = leadUnits.map((unit) => unit.lead);
    // One embedding call per unit size, as a segmenter of that size makes: the int8 encoder's vectors
    // move slightly (~1e-3 in cosine) with what else is in the batch.
    const [attention] = await Promise.all([
      sinksNeeded.size > 0 ? this.attentionOf(leads) : null,
      (async () => {
        for (const words of wordsNeeded)
          await this.embedMissing(
            [...new Set(units(words).map((unit) => unit.text)).values()].filter(
              (text) => !this.vectorMemo.has(text),
            ),
          );
      })(),
    ]);
    for (const words of wordsNeeded)
      vectors.set(
        words,
        units(words).map((unit) => this.vectorMemo.get(unit.text) ?? new Float32Array()),
      );
    if (attention !== null) {
      const leadsKey = JSON.stringify(leads);
      for (const sink of sinksNeeded) {
        const key = `${sink}|${leadsKey}`;
        let found = this.peaksMemo.get(key);
        if (found === undefined) {
          found = attentionPeaks(sentenceAttention(attention.matrix, attention.spans, sink));
          this.peaksMemo.set(key, found);
        }
        peaks.set(sink, found);
      }
    }
    return settings.map((s) =>
      hybridCuts(
        units(s.rule === 'attention' ? 0 : s.unitWords),
        peaks.get(s.sinkTokens) ?? [],
        vectors.get(s.unitWords) ?? null,
        s,
      ),
    );
  }

  private attentionOf(leads: readonly string[]): Promise<SentenceAttention> {
    const key = JSON.stringify(leads);
    let found = this.attentionMemo.get(key);
    if (found === undefined) {
      this.calls.attention++;
      const started = performance.now();
      found = this.attention.attention(leads).finally(() => {
        this.calls.attentionMs += performance.now() - started;
      });
      this.attentionMemo.set(key, found);
    }
    return found;
  }

  private async embedMissing(texts: readonly string[]): Promise<void> {
    if (texts.length === 0) return;
    this.calls.embedded += texts.length;
    const started = performance.now();
    const vectors = await this.embedder.embed(texts);
    this.calls.embeddingMs += performance.now() - started;
    texts.forEach((text, i) => {
      const vector = vectors[i];
      if (vector !== undefined) this.vectorMemo.set(text, vector);
    });
  }
}

export interface StreamSettings {
  readonly compression: CompressionSettings;
  readonly countedRoles: ReadonlySet<Role>;
}

/**
 * One stream's boundary counts under every setting of `grid`, each exactly as `segmentStream` with a
 * `HybridSegmenter` of that setting would give them, without running the stage once per setting: the
 * stage runs once per distinct trajectory. Settings that propose the same cuts in every buffer they are
 * asked about see the same buffers, so they share a run; when a buffer's cuts differ, the settings split
 * into groups and each group is replayed with one representative. Returns the counts and how many stage
 * runs it took.
 */
export async function gridCounts(
  turns: readonly TurnInput[],
  grid: readonly SegmentSetting[],
  signals: StreamSignals,
  scorer: TokenScorer,
  settings: StreamSettings,
): Promise<{ counts: BoundaryCounts[]; runs: number }> {
  const compressed = await compressStream(turns, scorer, settings.compression);
  const counts: (BoundaryCounts | undefined)[] = grid.map(() => undefined);
  const byBuffer = new Map<number, number[]>();
  grid.forEach((s, i) => {
    const members = byBuffer.get(s.bufferTokens);
    if (members === undefined) byBuffer.set(s.bufferTokens, [i]);
    else members.push(i);
  });
  const pending = [...byBuffer.values()];
  let runs = 0;
  for (let group = pending.pop(); group !== undefined; group = pending.pop()) {
    const representative = group[0];
    if (representative === undefined) continue;
    let current = group;
    const segmenter: Segmenter = {
      version: 'grid',
      capability: 'grid',
      boundaries: async (buffer) => {
        const cuts = await signals.cuts(
          buffer,
          current.map((i) => grid[i] as SegmentSetting),
        );
        const groups = new Map<string, number[]>();
        current.forEach((settingIndex, k) => {
          const key = (cuts[k] ?? []).map((b) => b.index).join(',');
          const members = groups.get(key);
          if (members === undefined) groups.set(key, [settingIndex]);
          else members.push(settingIndex);
        });
        const mine = (cuts[0] ?? []).map((b) => b.index).join(',');
        for (const [key, members] of groups) if (key !== mine) pending.push(members);
        current = groups.get(mine) ?? [representative];
        return cuts[0] ?? [];
      },
    };
    runs++;
    const { predicted, gold } = await segmentStream(
      turns,
      segmenter,
      scorer,
      {
        ...settings,
        capacityTokens: (grid[representative] as SegmentSetting).bufferTokens,
      },
      compressed,
    );
    const result = countBoundaries(predicted, gold);
    for (const i of current) counts[i] = result;
  }
  return { counts: counts.map((c) => c ?? { predicted: 0, gold: 0, exact: 0, nearby: 0 }), runs };
}
