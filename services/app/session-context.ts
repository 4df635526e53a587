/**
 * Evidence comes in conversations, not in single turns: the turn that answers a question usually sits in
 * the same session as other turns about the same thing (the question that prompted it, the follow-up). A
 * hit whose session holds another strong hit is more likely the evidence than an equally scored hit alone
 * in its session. Each hit gets a share of the best score among the hits of the other turns of its session:
 * `(score + boost · best other) / (1 + boost)`, so scores stay in [0, 1], a hit alone in its session keeps
 * `score / (1 + boost)`, and `boost = 0` changes nothing.
 *
 * Measured on LoCoMo dev (defaults, top 50 re-ranked): R@B1000 0.788 → 0.805 at boost 0.4; penalising a
 * session's later hits instead (diversity across sessions, MMR-like) lowered it (0.771 at 0.02), multi-hop
 * included: the gold turns of a question cluster in sessions. docs/benchmarks.md has the table.
 */
import type { Cued } from './query-cues.js';

export function applySessionContext<T>(
  hits: readonly Cued<T>[],
  placeOf: (item: T) => { readonly session: string; readonly turn: string },
  boost: number,
): Cued<T>[] {
  if (boost <= 0 || hits.length < 2) return [...hits];
  // Per session, the best score of each turn; a hit's "best other" is the best of another turn, so the
  // chunks of one long turn (sentence-chunks.ts) do not vouch for each other.
  const turns = new Map<string, Map<string, number>>();
  for (const hit of hits) {
    const { session, turn } = placeOf(hit.item);
    const scores = turns.get(session) ?? new Map<string, number>();
    turns.set(session, scores);
    scores.set(turn, Math.max(scores.get(turn) ?? 0, hit.score));
  }
  const bestOther = (session: string, turn: string): number => {
    let best = 0;
    for (const [other, score] of turns.get(session) ?? []) if (other !== turn && score > best) best = score;
    return best;
  };
  return hits
    .map((hit, index) => {
      const { session, turn } = placeOf(hit.item);
      return { hit: { ...hit, score: (hit.score + boost * bestOther(session, turn)) / (1 + boost) }, index };
    })
    .sort((a, b) => b.hit.score - a.hit.score || a.index - b.index)
    .map(({ hit }) => hit);
}
