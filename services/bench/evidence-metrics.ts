/**
 * Evidence recall of a ranked retrieval, without an LLM: how much of a question's gold evidence (source
 * turn ids) the retrieved memories carry, at a rank cut-off k or within a prompt token budget. Pure
 * functions shared by every recall benchmark (LoCoMo, LongMemEval).
 */

/** One retrieved memory as the metrics see it: the turns it came from and what it costs in a prompt. */
export interface RankedEvidence {
  readonly sources: readonly string[];
  /** Tokens of the memory's prompt text. */
  readonly tokens: number;
}

export interface EvidenceQuestion {
  readonly category: string;
  /** Gold source ids; questions without any are not scored. */
  readonly gold: readonly string[];
  /** Retrieved memories, best first. */
  readonly ranked: readonly RankedEvidence[];
}

export const defaultRecallKs: readonly number[] = [5, 10, 20, 50];
export const defaultTokenBudgets: readonly number[] = [500, 1000, 2000];

function goldSet(gold: readonly string[]): Set<string> {
  const set = new Set(gold);
  if (set.size === 0) throw new RangeError('evidence recall needs at least one gold id');
  return set;
}

function coverage(gold: ReadonlySet<string>, taken: readonly RankedEvidence[]): number {
  const found = new Set<string>();
  for (const memory of taken) for (const source of memory.sources) if (gold.has(source)) found.add(source);
  return found.size;
}

/** |gold ∩ sources of the top k| / |gold|. */
export function recallAtK(gold: readonly string[], ranked: readonly RankedEvidence[], k: number): number {
  const set = goldSet(gold);
  return coverage(set, ranked.slice(0, k)) / set.size;
}

/** Whether every gold id is among the sources of the top k. */
export function allAtK(gold: readonly string[], ranked: readonly RankedEvidence[], k: number): boolean {
  const set = goldSet(gold);
  return coverage(set, ranked.slice(0, k)) === set.size;
}

/**
 * How many memories fit a prompt budget: taken in rank order while their tokens add up to at most
 * `budget`; the first memory that would overflow it stops the filling (it and those after it are not
 * taken, even if a later one would fit).
 */
export function takenWithinBudget(ranked: readonly RankedEvidence[], budget: number): number {
  let used = 0;
  let taken = 0;
  for (const memory of ranked) {
    if (used + memory.tokens > budget) break;
    used += memory.tokens;
    taken++;
  }
  return taken;
}

/** Recall of the memories that fit a budget of `budget` prompt tokens. */
export function recallAtBudget(
  gold: readonly string[],
  ranked: readonly RankedEvidence[],
  budget: number,
): number {
  const set = goldSet(gold);
  return coverage(set, ranked.slice(0, takenWithinBudget(ranked, budget))) / set.size;
}

/** Mean figures over a set of questions. Keys of the maps are k or the budget, as strings. */
export interface RecallFigures {
  readonly questions: number;
  /** Mean R@k. */
  readonly recallAtK: Readonly<Record<string, number>>;
  /** Fraction of questions with all gold in the top k. */
  readonly allAtK: Readonly<Record<string, number>>;
  /** Mean R@B. */
  readonly recallAtBudget: Readonly<Record<string, number>>;
  /** Mean number of memories that fit each budget. */
  readonly memoriesAtBudget: Readonly<Record<string, number>>;
}

export interface EvidenceFigures {
  readonly overall: RecallFigures;
  /** Per category, categories in natural order (numbers numerically). */
  readonly byCategory: Readonly<Record<string, RecallFigures>>;
  /** Questions left out because they have no gold id. */
  readonly withoutGold: number;
}

export interface FigureOptions {
  readonly ks?: readonly number[] | undefined;
  readonly budgets?: readonly number[] | undefined;
}

/** Mean figures overall and per category; questions without gold are counted apart, not scored. */
export function evidenceFigures(
  questions: readonly EvidenceQuestion[],
  options: FigureOptions = {},
): EvidenceFigures {
  const ks = options.ks ?? defaultRecallKs;
  const budgets = options.budgets ?? defaultTokenBudgets;
  const scored = questions.filter((q) => q.gold.length > 0);
  const categories = [...new Set(scored.map((q) => q.category))].sort(naturalOrder);
  const byCategory: Record<string, RecallFigures> = {};
  for (const category of categories) {
    byCategory[category] = meanFigures(
      scored.filter((q) => q.category === category),
      ks,
      budgets,
    );
  }
  return {
    overall: meanFigures(scored, ks, budgets),
    byCategory,
    withoutGold: questions.length - scored.length,
  };
}

function meanFigures(
  questions: readonly EvidenceQuestion[],
  ks: readonly number[],
  budgets: readonly number[],
): RecallFigures {
  const mean = (value: (q: EvidenceQuestion) => number): number =>
    questions.length === 0 ? 0 : round(questions.reduce((sum, q) => sum + value(q), 0) / questions.length);
  const perK = (value: (q: EvidenceQuestion, k: number) => number): Record<string, number> =>
    Object.fromEntries(ks.map((k) => [String(k), mean((q) => value(q, k))]));
  const perBudget = (value: (q: EvidenceQuestion, b: number) => number): Record<string, number> =>
    Object.fromEntries(budgets.map((b) => [String(b), mean((q) => value(q, b))]));
  return {
    questions: questions.length,
    recallAtK: perK((q, k) => recallAtK(q.gold, q.ranked, k)),
    allAtK: perK((q, k) => (allAtK(q.gold, q.ranked, k) ? 1 : 0)),
    recallAtBudget: perBudget((q, b) => recallAtBudget(q.gold, q.ranked, b)),
    memoriesAtBudget: perBudget((q, b) => takenWithinBudget(q.ranked, b)),
  };
}

function naturalOrder(a: string, b: string): number {
  const [x, y] = [Number(a), Number(b)];
  if (!Number.isNaN(x) && !Number.isNaN(y)) return x - y;
  return a < b ? -1 : a > b ? 1 : 0;
}

function round(value: number): number {
  return Math.round(value * 10_000) / 10_000;
}
