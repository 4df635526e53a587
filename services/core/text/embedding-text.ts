import type { MemoryEntry } from '../model/generated.js';

/**
 * The text a memory's vector is computed from: its speaker before its source text (uncompressed: the
 * compressor shortens what a prompt shows, not what search matches on) (`Caroline: I went to a
 * support group.`), as a prompt shows it. Questions name people ("What did Caroline research?"); without
 * the name in the vector, the kNN half cannot tell whose memory it is (LoCoMo, bge-small: kNN R@10 0.44
 * on the bare text, 0.59 with the speaker). Summaries already name the speaker on each line.
 */
export function embeddingText(
  entry: Pick<MemoryEntry, 'kind' | 'speaker' | 'text' | 'sourceText' | 'pipeline'>,
): string {
  const text = searchText(entry);
  const speaker = entry.speaker.trim();
  return entry.kind === 'summary' || speaker === '' ? text : `${speaker}: ${text}`;
}

/**
 * The text search matches a memory by (BM25 and vector). An extractive memory's `text` is its turn
 * compressed, so the uncompressed source text alone (it holds every word of `text`). An LLM's memory
 * (a prompt made it: `pipeline.promptHash`) is a rewritten, standalone fact: the fact and the words said,
 * so a question matches either.
 */
export function searchText(entry: Pick<MemoryEntry, 'text' | 'sourceText' | 'pipeline'>): string {
  if (entry.sourceText === null) return entry.text;
  return entry.pipeline.promptHash === null ? entry.sourceText : `${entry.text}\n${entry.sourceText}`;
}
