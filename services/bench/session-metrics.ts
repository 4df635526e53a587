/**
 * LongMemEval's own retrieval metrics at session level, computed as its scripts compute them
 * (`src/retrieval/eval_utils.py`, `evaluate_retrieval_turn2session`), so that our figures sit next to
 * published ones:
 *
 * - The ranked items are turns (here: memories, each mapped to a session). An item is relevant when it
 *   carries a gold turn (a user turn marked `has_answer`); an item of an answer session that carries no gold
 *   turn belongs to a session of its own (the script renames those turns `noans_…`), so it is neither
 *   relevant nor the same session as the gold.
 * - k counts distinct sessions: the ranking is read until it holds k distinct sessions (or ends).
 * - recall_any@k: a gold session is among them; recall_all@k: every gold session is.
 * - ndcg_any@k: DCG of the relevance of the items read, over the ideal DCG of the corpus, where every gold
 *   turn is one relevant item (capped at 1).
 *
 * Questions without a gold user turn are left out (the script would score them 0 on recall_any): the same
 * questions as our R@k and R@B.
 */

export interface SessionQuestion {
  /** Gold turn ids, `<session id>:<turn index>`. */
  readonly gold: readonly string[];
  /** The source turn ids of each retrieved memory, best first. */
  readonly ranked: readonly (readonly string[])[];
}

export const sessionMetricKs: readonly number[] = [5, 10];

export interface SessionFigures {
  readonly questions: number;
  /** `recall_any@5`, `recall_all@5`, `ndcg_any@5`, and the same at 10, means over questions. */
  readonly metrics: Readonly<Record<string, number>>;
}

/** The session of a turn id `<session id>:<turn index>`. */
export function sessionOfTurn(turnId: string): string {
  const at = turnId.lastIndexOf(':');
  return at < 0 ? turnId : turnId.slice(0, at);
}

/** Each ranked memory as the script would see it: its session id, and whether it is relevant. */
function rankedSessions(
  gold: ReadonlySet<string>,
  ranked: readonly (readonly string[])[],
): { session: string; relevant: boolean }[] {
  return ranked.map((sources) => {
    const hit = sources.find((source) => gold.has(source));
    if (hit !== undefined) return { session: sessionOfTurn(hit), relevant: true };
    const first = sources[0] ?? '';
    return { session: `noans:${sessionOfTurn(first)}`, relevant: false };
  });
}

function dcg(relevances: readonly number[]): number {
  return relevances.reduce((sum, rel, i) => sum + (i === 0 ? rel : rel / Math.log2(i + 1)), 0);
}

/** The three metrics of one question at k (distinct sessions). */
export function sessionMetricsAt(
  question: SessionQuestion,
  k: number,
): { recallAny: number; recallAll: number; ndcgAny: number } {
  const gold = new Set(question.gold);
  const goldSessions = new Set([...gold].map(sessionOfTurn));
  const items = rankedSessions(gold, question.ranked);
  // effective k: the shortest prefix with k distinct sessions (the whole ranking when it has fewer).
  let effective = 0;
  const seen = new Set<string>();
  while (effective < items.length && seen.size < k) {
    seen.add(items[effective]?.session ?? '');
    effective++;
  }
  const read = items.slice(0, effective);
  const recalled = new Set(read.map((item) => item.session));
  const ideal = dcg(Array.from({ length: Math.min(gold.size, effective) }, () => 1));
  const actual = dcg(read.map((item) => (item.relevant ? 1 : 0)));
  return {
    recallAny: [...goldSessions].some((s) => recalled.has(s)) ? 1 : 0,
    recallAll: [...goldSessions].every((s) => recalled.has(s)) ? 1 : 0,
    // Several memories can carry one gold turn (a long turn split into sentences), so the read prefix can
    // hold more relevant items than the script's corpus of turns has: capped at 1.
    ndcgAny: ideal === 0 ? 0 : Math.min(1, actual / ideal),
  };
}

/** Means over the questions that have gold user turns. */
export function sessionFigures(
  questions: readonly SessionQuestion[],
  ks: readonly number[] = sessionMetricKs,
): SessionFigures {
  const scored = questions.filter((q) => q.gold.length > 0);
  const metrics: Record<string, number> = {};
  for (const k of ks) {
    const each = scored.map((q) => sessionMetricsAt(q, k));
    const mean = (pick: (m: (typeof each)[number]) => number): number =>
      each.length === 0
        ? 0
        : Math.round((each.reduce((s, m) => s + pick(m), 0) / each.length) * 10_000) / 10_000;
    metrics[`recall_any@${k}`] = mean((m) => m.recallAny);
    metrics[`recall_all@${k}`] = mean((m) => m.recallAll);
    metrics[`ndcg_any@${k}`] = mean((m) => m.ndcgAny);
  }
  return { questions: scored.length, metrics };
}
