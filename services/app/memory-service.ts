import type { EventLog } from '../core/ports/event-log.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { Clock } from '../core/ports/clock.js';
import type { LlmUsageTotals } from '../core/ports/llm-ledger.js';
import { LightmemError } from '../core/errors.js';
import { decodeTurnInput, type InputItem } from '../ingest/index.js';
import { Ingestion } from './ingestion.js';
import { MemorySearch, memoryView, type MemoryView, type SearchResult } from './memory-search.js';
import { historyView, type HistoryView } from './memory-history.js';
import { bufferedTurns } from './buffered-turns.js';
import { count, timed } from '../telemetry/meters.js';
import { defaultCueWeights, type CueWeights } from './query-cues.js';
import { requireScope, tenantOf, type Caller } from './caller.js';
import type { EventsRequest, IngestResponse, SearchRequest, UsageResponse } from './api-schemas.js';
import type { ErasureReceipt } from './user-erasure.js';
import type { Replays, ReplayStatus } from './replays.js';
import type { VersionDiff } from './version-diff.js';
import type {
  ConsolidationScope,
  ConsolidationSummary,
} from '../../workflows/consolidation/activity-types.js';

export interface MemoryServiceDeps {
  readonly log: EventLog;
  readonly store: MemoryStore;
  readonly embedder: Embedder | null;
  readonly clock: Clock;
  readonly cues?: CueWeights | undefined;
  /** Resolves true when the pipeline has processed everything appended so far, false after the timeout. */
  readonly waitForDrain: (timeoutMs: number) => Promise<boolean>;
  /** LLM calls and tokens per model of a tenant (the cost ledger), since an instant. */
  readonly usage: (filter: {
    tenantId: string;
    since?: number | undefined;
  }) => Promise<readonly LlmUsageTotals[]>;
  /** Removes one user of a tenant everywhere and says what went (see user-erasure.ts). */
  readonly eraseUser: (tenantId: string, userId: string) => Promise<ErasureReceipt>;
  /** Finishes the erasures a crash interrupted (every tenant); their receipts. */
  readonly resumeErasures: () => Promise<ErasureReceipt[]>;
  /**
   * The embedder of the pipeline version that serves a tenant (a replayed version may use another model);
   * absent: `embedder` for every tenant.
   */
  readonly embedderFor?: ((tenantId: string) => Promise<Embedder | null>) | undefined;
  /** Replay into new pipeline versions. */
  readonly replays: Replays;
  /** Sleep-time consolidation of one user now (embedded: in this process; distributed: a workflow). */
  readonly consolidate: (
    scope: ConsolidationScope,
    options: { dryRun: boolean; signal?: AbortSignal | undefined },
  ) => Promise<ConsolidationSummary>;
  /** `ready: false`: the pipeline does not run, or a stage failed (with the reasons). */
  readonly health: () => Promise<{ ready: boolean } & Record<string, unknown>>;
}

/** How long `wait` waits for the pipeline before answering with `processed: false`. */
const waitTimeoutMs = 30_000;

/**
 * The memory service: what every front end (HTTP API, MCP server, CLI) calls. Each operation takes the
 * caller, checks its scope (read, write, admin) and confines itself to the caller's tenant: no request
 * field can widen it.
 */
export class MemoryService {
  private readonly ingestion: Ingestion;
  private readonly searcher: MemorySearch;

  constructor(private readonly deps: MemoryServiceDeps) {
    this.ingestion = new Ingestion(deps.log, deps.clock);
    this.searcher = new MemorySearch(deps.store, deps.embedder, deps.cues ?? defaultCueWeights);
  }

  /**
   * Appends turns (idempotent per turn id); invalid items are reported and dead-lettered, the others
   * accepted. With `wait`, answers once they are searchable (`processed`) or the wait ran out.
   */
  async ingest(
    caller: Caller,
    request: EventsRequest & { wait?: boolean | undefined; traceContext?: string | undefined },
  ): Promise<IngestResponse> {
    requireScope(caller, 'write');
    request.events.forEach((event, index) => tenantOf(caller, event['tenantId'], `events.${index}.tenantId`));
    const items: InputItem[] = request.events.map((raw, index) => {
      const text = JSON.stringify(raw);
      // Order within the batch stands in for seq when the caller gives a turnId but no seq.
      const result = decodeTurnInput(raw, { tenantId: caller.tenantId, seq: index });
      const labelled = result.ok
        ? result
        : { ok: false as const, error: { ...result.error, field: `events.${index}.${result.error.field}` } };
      return { line: null, label: `events[${index}]`, raw: text.slice(0, 64 * 1024), result: labelled };
    });
    const report = await this.ingestion.ingest(items, {
      source: 'http',
      endSessions: request.endSession,
      traceContext: request.traceContext,
    });
    const answer: IngestResponse = {
      accepted: report.accepted,
      duplicates: report.duplicates,
      rejected: items.flatMap((item, index) =>
        item.result.ok ? [] : [{ index, field: item.result.error.field, message: item.result.error.message }],
      ),
      sessionEnds: report.sessionEnds,
    };
    if (request.wait !== true) return answer;
    // processed: every posted turn is searchable (the pipeline caught up and none waits in a buffer of
    // an open session); buffered: how many still wait for their session to end (or the idle flush).
    const turns = items.flatMap((item) =>
      item.result.ok && item.result.event.kind === 'turn' ? [item.result.event] : [],
    );
    const drained = await this.deps.waitForDrain(waitTimeoutMs);
    if (!drained) return { ...answer, processed: false };
    const buffered = await bufferedTurns(this.deps.log, turns);
    return { ...answer, processed: buffered === 0, buffered };
  }

  /** Memories of one user ranked for a query: current versions, or those valid at `asOf`. */
  async search(caller: Caller, request: SearchRequest): Promise<SearchResult[]> {
    requireScope(caller, 'read');
    const tenantId = tenantOf(caller, request.tenantId);
    return timed('lightmem_search_duration_seconds', async () => {
      const searcher =
        this.deps.embedderFor === undefined
          ? this.searcher
          : new MemorySearch(this.deps.store, await this.deps.embedderFor(tenantId), this.deps.cues);
      return searcher.search({
        scope: {
          tenantId,
          userId: request.userId,
          agentId: request.agentId,
          conversationId: request.conversationId,
          sessionId: request.sessionId,
        },
        query: request.query,
        limit: request.limit,
        from: request.from,
        to: request.to,
        includeSuperseded: request.includeSuperseded,
        asOf: request.asOf,
      });
    });
  }

  /** One memory of a user, with its provenance (any version); not_found outside the user's scope. */
  async get(
    caller: Caller,
    request: { userId: string; id: string; tenantId?: string | undefined },
  ): Promise<MemoryView> {
    requireScope(caller, 'read');
    const entry = await this.deps.store.get(
      { tenantId: tenantOf(caller, request.tenantId), userId: request.userId },
      request.id,
    );
    if (entry === undefined) throw notFound(request.id);
    return memoryView(entry);
  }

  /** A page of a user's memories (current ones unless `includeSuperseded`), with the cursor of the next. */
  async list(
    caller: Caller,
    request: {
      userId: string;
      limit?: number | undefined;
      cursor?: string | undefined;
      includeSuperseded?: boolean | undefined;
    },
  ): Promise<{ items: MemoryView[]; nextCursor: string | null }> {
    requireScope(caller, 'read');
    const page = await this.deps.store.list({
      scope: { tenantId: caller.tenantId, userId: request.userId },
      limit: request.limit ?? 50,
      cursor: request.cursor,
      includeSuperseded: request.includeSuperseded,
    });
    return { items: page.items.map(memoryView), nextCursor: page.nextCursor };
  }

  /** The versions of a memory with the decisions that made and closed them. */
  async history(
    caller: Caller,
    request: { userId: string; id: string; tenantId?: string | undefined },
  ): Promise<HistoryView> {
    requireScope(caller, 'read');
    const history = await this.deps.store.history(
      { tenantId: tenantOf(caller, request.tenantId), userId: request.userId },
      request.id,
    );
    if (history === undefined) throw notFound(request.id);
    return historyView(request.id, history);
  }

  /**
   * Consolidates one user's new memories now (write): updates, supersedes and merges as new versions, the
   * old ones kept for history; with `dryRun` it decides and reports but changes nothing.
   */
  async consolidate(
    caller: Caller,
    request: { userId: string; dryRun?: boolean | undefined; signal?: AbortSignal | undefined },
  ): Promise<ConsolidationSummary> {
    requireScope(caller, 'write');
    return this.deps.consolidate(
      { tenantId: caller.tenantId, userId: request.userId },
      { dryRun: request.dryRun === true, signal: request.signal },
    );
  }

  /** Erases a user everywhere (admin): memories, log records, stage state, pending work; a receipt. */
  async eraseUser(caller: Caller, request: { userId: string }): Promise<ErasureReceipt> {
    requireScope(caller, 'admin');
    const receipt = await this.deps.eraseUser(caller.tenantId, request.userId);
    count('lightmem_erasures_total');
    return receipt;
  }

  /**
   * Finishes the erasures that a crash interrupted, of every tenant (a server does it as it starts): the
   * machine's operator only.
   */
  async resumeErasures(caller: Caller): Promise<ErasureReceipt[]> {
    if (caller.keyId !== null) throw new LightmemError('forbidden', 'only the operator resumes erasures');
    return this.deps.resumeErasures();
  }

  /** The tenant's LLM calls and tokens per model (the cost ledger), since an instant. */
  async usage(caller: Caller, request: { since?: number | undefined }): Promise<UsageResponse> {
    requireScope(caller, 'read');
    const rows = await this.deps.usage({ tenantId: caller.tenantId, since: request.since });
    const byModel = rows.map((row) => ({
      model: row.model,
      calls: row.calls,
      failedCalls: row.failedCalls,
      reusedAnswers: row.reusedAnswers,
      promptTokens: row.promptTokens,
      completionTokens: row.completionTokens,
      latencyMs: row.latencyMs,
    }));
    const total = (key: 'calls' | 'failedCalls' | 'reusedAnswers' | 'promptTokens' | 'completionTokens') =>
      byModel.reduce((sum, row) => sum + row[key], 0);
    return {
      tenantId: caller.tenantId,
      since: request.since ?? null,
      llm: {
        calls: total('calls'),
        failedCalls: total('failedCalls'),
        reusedAnswers: total('reusedAnswers'),
        promptTokens: total('promptTokens'),
        completionTokens: total('completionTokens'),
        byModel,
      },
    };
  }

  /**
   * Starts re-deriving memories from the raw log with the current configuration into a new pipeline
   * version (admin), or resumes the one building for the same tenants: the caller's tenant, or for the
   * operator at the command line the tenants named (null: every tenant). With `since`, only the sessions
   * active since then are derived again; the memories of the others are carried over as they are.
   */
  async startReplay(
    caller: Caller,
    request: { tenants?: readonly string[] | null; since?: number | null | undefined },
  ): Promise<ReplayStatus> {
    const status = await this.replaysFor(caller).start(
      this.replayTenants(caller, request.tenants),
      request.since ?? null,
    );
    count('lightmem_replays_total', { action: 'start' });
    return status;
  }

  /** The pipeline versions the caller's tenant can see, with their progress and the reads they serve. */
  async replays(caller: Caller): Promise<ReplayStatus[]> {
    requireScope(caller, 'read');
    return this.replaysOf().list(this.tenantView(caller));
  }

  async replay(caller: Caller, request: { version: string }): Promise<ReplayStatus> {
    requireScope(caller, 'read');
    return this.replaysOf().status(request.version, this.tenantView(caller));
  }

  /** What a version would change for the caller's tenant: added, removed and changed memories. */
  async diffReplay(
    caller: Caller,
    request: { version: string; against?: string | undefined },
  ): Promise<VersionDiff> {
    requireScope(caller, 'read');
    return this.replaysOf().diff(request.version, {
      tenant: this.tenantView(caller),
      against: request.against,
    });
  }

  /** Routes the caller's tenant's reads (the operator: the tenants named, or every tenant) to a version. */
  async switchReplay(
    caller: Caller,
    request: { version: string; tenants?: readonly string[] | null },
  ): Promise<ReplayStatus> {
    const status = await this.replaysFor(caller).switchTo(
      request.version,
      this.replayTenants(caller, request.tenants),
    );
    count('lightmem_replays_total', { action: 'switch' });
    return status;
  }

  /**
   * Drops a version that serves no reads and deletes its data. A tenant's key may drop only a version of
   * its own tenant alone; the operator any.
   */
  async dropReplay(caller: Caller, request: { version: string }): Promise<ReplayStatus> {
    const replays = this.replaysFor(caller);
    if (caller.keyId !== null) {
      const version = await replays.visible(request.version, caller.tenantId);
      if (JSON.stringify(version.tenants) !== JSON.stringify([caller.tenantId])) {
        throw new LightmemError(
          'forbidden',
          `${request.version} derives other tenants too: only the operator can drop it`,
        );
      }
    }
    const dropped = await replays.drop(request.version);
    count('lightmem_replays_total', { action: 'drop' });
    return dropped;
  }

  private replaysOf(): Replays {
    return this.deps.replays;
  }

  private replaysFor(caller: Caller): Replays {
    requireScope(caller, 'admin');
    return this.replaysOf();
  }

  /** The operator (no key) sees every tenant; a key only its own. */
  private tenantView(caller: Caller): string | null {
    return caller.keyId === null ? null : caller.tenantId;
  }

  private replayTenants(
    caller: Caller,
    named: readonly string[] | null | undefined,
  ): readonly string[] | null {
    if (caller.keyId === null) return named ?? null;
    for (const tenant of named ?? []) tenantOf(caller, tenant, 'tenants');
    return [caller.tenantId];
  }

  /** Whether the pipeline runs with every stage alive (no tenant data: health checks carry no key). */
  health(): Promise<{ ready: boolean } & Record<string, unknown>> {
    return this.deps.health();
  }
}

function notFound(id: string): LightmemError {
  return new LightmemError('not_found', `no memory ${id} in this scope`, { field: 'id' });
}
