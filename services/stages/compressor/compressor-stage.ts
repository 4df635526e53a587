import type { BatchHandler, OutputRecord, StateWrite } from '../../core/ports/event-log.js';
import type { TokenScorer } from '../../core/ports/token-scorer.js';
import type { CompressedTurn, ConversationEvent } from '../../core/model/generated.js';
import { Topics, conversationKey } from '../../core/model/topics.js';
import { eventDedupKey } from '../../core/model/keys.js';
import { compressTexts, type CompressionSettings } from './sensory-compressor.js';
import { turnStateKey } from '../state-keys.js';
import { approxTokenCount } from '../../core/text/token-count.js';

export interface CompressorStageDeps {
  readonly scorer: TokenScorer;
  readonly settings: CompressionSettings;
}

/** Version of what this stage produces: scorer and rate, because both change the compressed text. */
export function compressorVersion(deps: CompressorStageDeps): string {
  return deps.settings.rate >= 1 ? 'none' : `${deps.scorer.version}@r${deps.settings.rate}`;
}

/**
 * The stage's record that it has processed an event (the same identity as `eventDedupKey`): turns under
 * `seen` (as before), control events in namespaces of their own.
 */
function seenStateKey(event: ConversationEvent): string {
  return turnStateKey(event.kind === 'turn' ? 'seen' : `seen-${event.kind}`, event);
}

/**
 * Sensory compression (LightMem Light1a) of every turn; control events pass through. Turns seen before
 * (same turn id in the same conversation) are dropped here, so a re-sent turn never reaches the buffers
 * (on Kafka, which cannot deduplicate appends, this is the only check).
 */
export function compressorStage(deps: CompressorStageDeps): BatchHandler<typeof Topics.raw> {
  const version = compressorVersion(deps);
  return async (records, state) => {
    const fresh: ConversationEvent[] = [];
    const stateWrites: StateWrite[] = [];
    const seenInBatch = new Set<string>();
    for (const { value: event } of records) {
      const key = seenStateKey(event);
      if (seenInBatch.has(key) || (await state.get(key)) !== undefined) continue;
      seenInBatch.add(key);
      stateWrites.push({ key, value: '1' });
      fresh.push(event);
    }
    const turns = fresh.filter((event) => event.kind === 'turn');
    const compressed = await compressTexts(
      turns.map((event) => event.text),
      deps.scorer,
      deps.settings,
    );
    const byTurn = new Map(turns.map((event, index) => [event, compressed[index]]));
    const output: OutputRecord[] = fresh.map((event) => {
      const result = byTurn.get(event);
      const originalTokens = result?.originalTokens ?? approxTokenCount(event.text);
      const keptTokens = result?.keptTokens ?? originalTokens;
      const value: CompressedTurn = {
        event,
        compressedText: result?.text ?? event.text,
        originalTokens,
        keptTokens,
        keepRatio: originalTokens === 0 ? 1 : keptTokens / originalTokens,
        scorerVersion: version,
      };
      return { topic: Topics.compressed, key: conversationKey(event), value, dedupKey: eventDedupKey(event) };
    });
    return { records: output, state: stateWrites };
  };
}
