import type { Scope } from '../core/model/scope.js';
import type {
  WriteOptions,
  ApplyResult,
  ListRequest,
  MemoryHistory,
  MemoryStore,
  MemoryWrite,
  NearestRequest,
  Neighbour,
  OpWrite,
  PendingUser,
  SearchHit,
  SearchRequest,
  StoreStats,
  UpsertResult,
} from '../core/ports/memory-store.js';
import type { MemoryEntry } from '../core/model/generated.js';

/** Which store holds a tenant's memories now (the pipeline version its reads are routed to). */
export type StoreRoute = (tenantId: string) => Promise<MemoryStore>;

/**
 * The memory store as the API sees it: every call goes to the store of the pipeline version that serves
 * its tenant, looked up per call, so a switch of versions takes effect between two requests and never in
 * the middle of one. Calls without a tenant (an operator's view of every tenant) go to the store of
 * `everyTenant`. Closing it closes nothing: the runtime owns the stores.
 */
export class RoutedMemoryStore implements MemoryStore {
  constructor(
    private readonly route: StoreRoute,
    private readonly everyTenant: () => Promise<MemoryStore>,
  ) {}

  async upsert(writes: readonly MemoryWrite[], options?: WriteOptions): Promise<UpsertResult> {
    const results = await this.byTenant(
      writes,
      (write) => write.entry.tenantId,
      (store, part) => store.upsert(part, options),
    );
    return results.reduce(
      (sum, r) => ({
        inserted: sum.inserted + r.inserted,
        updated: sum.updated + r.updated,
        unchanged: sum.unchanged + r.unchanged,
      }),
      { inserted: 0, updated: 0, unchanged: 0 },
    );
  }

  async search(request: SearchRequest): Promise<SearchHit[]> {
    return (await this.route(request.scope.tenantId)).search(request);
  }

  async get(scope: Scope, id: string): Promise<MemoryEntry | undefined> {
    return (await this.route(scope.tenantId)).get(scope, id);
  }

  async list(request: ListRequest): Promise<{ items: MemoryEntry[]; nextCursor: string | null }> {
    return (await this.route(request.scope.tenantId)).list(request);
  }

  async supersede(scope: Scope, ids: readonly string[], by: string, at: number): Promise<number> {
    return (await this.route(scope.tenantId)).supersede(scope, ids, by, at);
  }

  async applyOps(ops: readonly OpWrite[]): Promise<ApplyResult> {
    const results = await this.byTenant(
      ops,
      (op) => op.op.tenantId,
      (store, part) => store.applyOps(part),
    );
    return results.reduce(
      (sum, r) => ({
        applied: sum.applied + r.applied,
        stale: sum.stale + r.stale,
        duplicate: sum.duplicate + r.duplicate,
      }),
      { applied: 0, stale: 0, duplicate: 0 },
    );
  }

  async recordedOps(tenantId: string, opIds: readonly string[]): Promise<Set<string>> {
    return (await this.route(tenantId)).recordedOps(tenantId, opIds);
  }

  async history(scope: Scope, id: string): Promise<MemoryHistory | undefined> {
    return (await this.route(scope.tenantId)).history(scope, id);
  }

  async nearest(requests: readonly NearestRequest[]): Promise<Neighbour[][]> {
    const answers: Neighbour[][] = Array.from({ length: requests.length }, () => []);
    const indexes = new Map<string, number[]>();
    requests.forEach((request, index) => {
      const list = indexes.get(request.scope.tenantId) ?? [];
      list.push(index);
      indexes.set(request.scope.tenantId, list);
    });
    for (const [tenantId, positions] of indexes) {
      const found = await (
        await this.route(tenantId)
      ).nearest(positions.map((i) => requests[i] as NearestRequest));
      positions.forEach((position, i) => (answers[position] = found[i] ?? []));
    }
    return answers;
  }

  async embeddings(scope: Scope, ids: readonly string[]): Promise<Map<string, Float32Array>> {
    return (await this.route(scope.tenantId)).embeddings(scope, ids);
  }

  async pendingConsolidation(scope: Scope, limit: number): Promise<MemoryEntry[]> {
    return (await this.route(scope.tenantId)).pendingConsolidation(scope, limit);
  }

  async markConsolidated(scope: Scope, ids: readonly string[], at: number): Promise<number> {
    return (await this.route(scope.tenantId)).markConsolidated(scope, ids, at);
  }

  async pendingUsers(tenantId?: string): Promise<PendingUser[]> {
    const store = tenantId === undefined ? await this.everyTenant() : await this.route(tenantId);
    return store.pendingUsers(tenantId);
  }

  async erase(scope: Scope): Promise<string[]> {
    return (await this.route(scope.tenantId)).erase(scope);
  }

  async stats(scope?: Scope): Promise<StoreStats> {
    const store = scope === undefined ? await this.everyTenant() : await this.route(scope.tenantId);
    return store.stats(scope);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private async byTenant<I, R>(
    items: readonly I[],
    tenantOf: (item: I) => string,
    run: (store: MemoryStore, part: readonly I[]) => Promise<R>,
  ): Promise<R[]> {
    const groups = new Map<string, I[]>();
    for (const item of items) {
      const group = groups.get(tenantOf(item)) ?? [];
      group.push(item);
      groups.set(tenantOf(item), group);
    }
    const results: R[] = [];
    for (const [tenantId, part] of groups) results.push(await run(await this.route(tenantId), part));
    return results;
  }
}
