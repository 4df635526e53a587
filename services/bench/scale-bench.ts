import type { MemoryStore, MemoryWrite, SearchHit } from '../core/ports/memory-store.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import {
  SCALE_EMBEDDER,
  Vocabulary,
  nearVector,
  questionText,
  seededRandom,
  syntheticWrite,
  turnText,
  unitVector,
} from './scale-corpus.js';

/**
 * `lightmem bench scale`: search latency as the store grows. For each size N it builds two stores with
 * synthetic memories (scale-corpus.ts): `user`, one user holding N memories, and `tenant`, N memories over
 * `tenantUsers` users of one tenant (so a user holds N / tenantUsers), then times user-scoped searches,
 * lexical only, kNN only and hybrid (BM25 + kNN), in every store kind given (SQLite, Elasticsearch). Stores
 * whose kNN is approximate are scored against the exact one: recall@10 is the share of the exact store's
 * kNN top 10 that the store's kNN top 10 also holds (the approximate path's own error), and the hybrid
 * agreement the same over the fused top 10 (which also moves with each store's BM25).
 */

/** A kind of store the bench builds: opened empty per case, closed (and removed) after it. */
export interface ScaleStoreKind {
  readonly name: string;
  /** Whether its kNN is exact (the reference for recall@10). */
  readonly exact: boolean;
  open(label: string): Promise<{ store: MemoryStore; close(): Promise<void> }>;
}

export interface ScaleBenchOptions {
  readonly sizes: readonly number[];
  readonly queries: number;
  readonly limit?: number;
  /** Users of the tenant in the `tenant` layout. */
  readonly tenantUsers?: number;
  readonly dims?: number;
  readonly seed?: number;
  /** Memories per upsert call. */
  readonly batch?: number;
  /** Which layouts to build (default both). */
  readonly layouts?: readonly ScaleLayout[];
  /** Queries run before timing starts, not counted (statements compile, pages load; default 20). */
  readonly warmUp?: number;
  readonly stores: readonly ScaleStoreKind[];
  readonly onProgress?: (message: string) => void;
}

export type ScaleLayout = 'user' | 'tenant';

export interface ScaleCaseReport {
  readonly store: string;
  readonly layout: ScaleLayout;
  /** Memories in the store (the tenant). */
  readonly memories: number;
  readonly users: number;
  /** Memories in the scope of each query (one user's). */
  readonly scopeMemories: number;
  readonly buildSeconds: number;
  readonly lexical: LatencySummary;
  readonly semantic: LatencySummary;
  readonly hybrid: LatencySummary;
  /** kNN-only top-10 agreement with the exact store (1 for an exact store; null when there is none). */
  readonly recallAt10: number | null;
  /** Hybrid top-10 agreement with the exact store (BM25 differences between stores included). */
  readonly hybridAgreement: number | null;
}

export interface ScaleBenchReport {
  readonly benchmark: 'scale';
  readonly dims: number;
  readonly limit: number;
  readonly queries: number;
  readonly seed: number;
  readonly cases: ScaleCaseReport[];
}

interface Query {
  readonly userId: string;
  readonly text: string;
  readonly vector: Float32Array;
}

const TENANT = 'bench-scale';

export async function runScaleBench(options: ScaleBenchOptions): Promise<ScaleBenchReport> {
  const limit = options.limit ?? 10;
  const dims = options.dims ?? 384;
  const seed = options.seed ?? 42;
  const tenantUsers = options.tenantUsers ?? 100;
  const layouts = options.layouts ?? ['user', 'tenant'];
  const warmUp = options.warmUp ?? 20;
  const vocabulary = new Vocabulary();
  const cases: ScaleCaseReport[] = [];
  for (const size of options.sizes) {
    for (const layout of layouts) {
      const users = layout === 'user' ? 1 : tenantUsers;
      const perUser = Math.floor(size / users);
      if (perUser < 1) continue;
      const spec = { layout, users, perUser, dims, seed, queries: options.queries, warmUp };
      let reference: Tops | undefined;
      // The exact stores first, so the others can be scored against them.
      const kinds = [...options.stores].sort((a, b) => Number(b.exact) - Number(a.exact));
      for (const kind of kinds) {
        const label = `${layout}-${size}`;
        options.onProgress?.(`${kind.name} ${label}: building`);
        const opened = await kind.open(label);
        const store = opened.store;
        try {
          const started = performance.now();
          const queries = await buildStore(store, spec, vocabulary, options.batch ?? 1_000);
          const buildSeconds = Math.round((performance.now() - started) / 100) / 10;
          options.onProgress?.(`${kind.name} ${label}: searching`);
          const timed = await timeSearches(store, queries, limit, warmUp);
          if (kind.exact) reference ??= timed;
          // 1 for an exact store; against the exact one for the others (null when there is none).
          const versus = (tops: (t: Tops) => string[][]): number | null =>
            kind.exact ? 1 : reference === undefined ? null : agreement(tops(reference), tops(timed));
          cases.push({
            store: kind.name,
            layout,
            memories: perUser * users,
            users,
            scopeMemories: perUser,
            buildSeconds,
            lexical: summarizeLatencies(timed.lexical),
            semantic: summarizeLatencies(timed.semantic),
            hybrid: summarizeLatencies(timed.hybrid),
            recallAt10: versus((t) => t.semanticTops),
            hybridAgreement: versus((t) => t.hybridTops),
          });
        } finally {
          await opened.close();
        }
      }
    }
  }
  return { benchmark: 'scale', dims, limit, queries: options.queries, seed, cases };
}

interface BuildSpec {
  readonly layout: ScaleLayout;
  readonly users: number;
  readonly perUser: number;
  readonly dims: number;
  readonly seed: number;
  readonly queries: number;
  readonly warmUp: number;
}

/**
 * Writes the memories in batches and returns the queries: each is about one memory (a few of its words,
 * a vector near its vector), picked before the build so the vectors need not be kept.
 */
async function buildStore(
  store: MemoryStore,
  spec: BuildSpec,
  vocabulary: Vocabulary,
  batch: number,
): Promise<Query[]> {
  const pick = seededRandom(spec.seed ^ 0x5bd1e995);
  const wanted = new Map<string, number[]>();
  const count = spec.queries + spec.warmUp;
  for (let q = 0; q < count; q++) {
    const key = `${Math.floor(pick() * spec.users)}:${Math.floor(pick() * spec.perUser)}`;
    wanted.set(key, [...(wanted.get(key) ?? []), q]);
  }
  const queries: (Query | undefined)[] = Array.from({ length: count }, () => undefined);
  let pending: MemoryWrite[] = [];
  for (let u = 0; u < spec.users; u++) {
    const userId = `user-${u}`;
    const random = seededRandom(spec.seed * 1_000_003 + u);
    for (let i = 0; i < spec.perUser; i++) {
      const text = turnText(vocabulary, random);
      const vector = unitVector(spec.dims, random);
      pending.push(syntheticWrite(TENANT, userId, i, text, vector));
      for (const q of wanted.get(`${u}:${i}`) ?? []) {
        const queryRandom = seededRandom(spec.seed + q * 7919);
        queries[q] = {
          userId,
          text: questionText(text, vocabulary, queryRandom),
          vector: nearVector(vector, queryRandom),
        };
      }
      if (pending.length >= batch) {
        await store.upsert(pending);
        pending = [];
      }
    }
  }
  if (pending.length > 0) await store.upsert(pending);
  return queries.filter((query): query is Query => query !== undefined);
}

/** Each query's top-10 ids, kNN only and hybrid. */
interface Tops {
  readonly semanticTops: string[][];
  readonly hybridTops: string[][];
}

interface Timed extends Tops {
  readonly lexical: number[];
  readonly semantic: number[];
  readonly hybrid: number[];
}

async function timeSearches(
  store: MemoryStore,
  queries: readonly Query[],
  limit: number,
  warmUp: number,
): Promise<Timed> {
  const lexical: number[] = [];
  const semantic: number[] = [];
  const hybrid: number[] = [];
  const semanticTops: string[][] = [];
  const hybridTops: string[][] = [];
  for (const [index, query] of queries.entries()) {
    const scope = { tenantId: TENANT, userId: query.userId };
    let started = performance.now();
    await store.search({ scope, text: query.text, limit });
    const lexicalMs = performance.now() - started;
    started = performance.now();
    // No words: the kNN side alone.
    const nearest: SearchHit[] = await store.search({
      scope,
      text: '',
      vector: query.vector,
      embedderId: SCALE_EMBEDDER,
      limit,
    });
    const semanticMs = performance.now() - started;
    started = performance.now();
    const hits: SearchHit[] = await store.search({
      scope,
      text: query.text,
      vector: query.vector,
      embedderId: SCALE_EMBEDDER,
      limit,
    });
    const hybridMs = performance.now() - started;
    if (index < warmUp) continue;
    lexical.push(lexicalMs);
    semantic.push(semanticMs);
    hybrid.push(hybridMs);
    semanticTops.push(nearest.slice(0, 10).map((hit) => hit.memory.id));
    hybridTops.push(hits.slice(0, 10).map((hit) => hit.memory.id));
  }
  return { lexical, semantic, hybrid, semanticTops, hybridTops };
}

/** Mean share of the exact top-10 ids that the other top 10 holds. */
function agreement(exact: readonly string[][], other: readonly string[][]): number {
  let sum = 0;
  let counted = 0;
  for (const [index, ids] of other.entries()) {
    const reference = exact[index];
    if (reference === undefined || reference.length === 0) continue;
    const set = new Set(ids);
    sum += reference.filter((id) => set.has(id)).length / reference.length;
    counted++;
  }
  return counted === 0 ? 1 : Math.round((sum / counted) * 10_000) / 10_000;
}

/** The report as a table, one line per case. */
export function formatScaleReport(report: ScaleBenchReport): string[] {
  const lines = [
    `search latency, user-scoped queries (limit ${report.limit}, ${report.queries} queries, ${report.dims}-dim vectors, seed ${report.seed}):`,
    'store          layout   memories  users  in scope   lexical p50/p95 ms   kNN p50/p95 ms   hybrid p50/p95 ms   kNN recall@10  hybrid agreement  build s',
  ];
  for (const c of report.cases) {
    lines.push(
      [
        c.store.padEnd(14),
        c.layout.padEnd(7),
        String(c.memories).padStart(9),
        String(c.users).padStart(6),
        String(c.scopeMemories).padStart(9),
        `${c.lexical.p50Ms}/${c.lexical.p95Ms}`.padStart(20),
        `${c.semantic.p50Ms}/${c.semantic.p95Ms}`.padStart(16),
        `${c.hybrid.p50Ms}/${c.hybrid.p95Ms}`.padStart(19),
        (c.recallAt10 === null ? '-' : String(c.recallAt10)).padStart(14),
        (c.hybridAgreement === null ? '-' : String(c.hybridAgreement)).padStart(17),
        String(c.buildSeconds).padStart(8),
      ].join(' '),
    );
  }
  return lines;
}
