import type { MemoryEntry } from '../model/generated.js';

/**
 * The text a memory's vector is computed from: its speaker before its source text (uncompressed: the
 * compressor shortens what a prompt shows, not what search matches on) (`Caroline: I went to a
 * support group.`), as a prompt shows it. Questions name people ("What did Caroline research?"); without
 * the name in the vector, the kNN half cannot tell whose memory it is (LoCoMo, bge-small: kNN R@10 0.44
 * on the bare text, 0.59 with the speaker). Summaries already name the speaker on each line.
 */
export function embeddingText(entry: Pick<MemoryEntry, 'kind' | 'speaker' | 'text' | 'sourceText'>): string {
  const text = entry.sourceText ?? entry.text;
  const speaker = entry.speaker.trim();
  return entry.kind === 'summary' || speaker === '' ? text : `${speaker}: ${text}`;
}
