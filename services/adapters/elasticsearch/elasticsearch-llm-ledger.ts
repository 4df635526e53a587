import { Client, type estypes } from '@elastic/elasticsearch';
import { z } from 'zod';
import type { ChatCompletion } from '../../core/ports/chat-model.js';
import {
  erasedUserMarker,
  type LlmCall,
  type LlmLedger,
  type LlmUsageFilter,
  type LlmUsageTotals,
} from '../../core/ports/llm-ledger.js';
import { LightmemError } from '../../core/errors.js';
import { errorTypeOf, esFailure } from './es-errors.js';
import { elasticsearchClient, type ElasticsearchSecurity } from './es-client.js';

export interface ElasticsearchLlmLedgerOptions {
  readonly node: string;
  /** Credentials and TLS (`elasticsearch.apiKey` | `username` + `password`, `elasticsearch.tls`). */
  readonly security?: ElasticsearchSecurity | undefined;
  /** The deployment's index prefix (`elasticsearch.indexPrefix`). */
  readonly indexPrefix: string;
  /** How long answers are kept for reuse (whole days: one answers index a day). */
  readonly answerRetentionDays: number;
  readonly now?: () => number;
  readonly requestTimeoutMs?: number;
}

const dayMs = 86_400_000;
const pruneEvery = 256;
const keyword = { type: 'keyword' } as const;
const long = { type: 'long' } as const;

/** Every call: small documents kept for good (the cost record). */
const callsMapping = {
  dynamic: 'strict',
  properties: {
    call_id: keyword,
    request_hash: keyword,
    tenant_id: keyword,
    user_id: keyword,
    conversation_id: keyword,
    stage: keyword,
    purpose: keyword,
    model: keyword,
    prompt_hash: keyword,
    prompt_tokens: long,
    completion_tokens: long,
    latency_ms: long,
    outcome: keyword,
    error: { type: 'keyword', index: false, doc_values: false },
    at: { type: 'date', format: 'epoch_millis' },
  },
} as const;

/** Answers, by request hash, in one index a day: a day past the retention is one index deletion. */
const answersMapping = {
  dynamic: 'strict',
  properties: {
    text: { type: 'text', index: false },
    prompt_tokens: long,
    completion_tokens: long,
    finish_reason: keyword,
    at: { type: 'date', format: 'epoch_millis' },
  },
} as const;

/** Calls erased per bulk request. */
const erasePage = 500;
const CallRef = z.object({ request_hash: z.string(), at: z.number() });

const AnswerDoc = z.object({
  text: z.string(),
  prompt_tokens: z.number(),
  completion_tokens: z.number(),
  finish_reason: z.enum(['stop', 'length', 'other']),
  at: z.number(),
});

const SumAgg = z.object({ value: z.number().nullable() });
const ModelBucket = z.object({
  key: z.string(),
  doc_count: z.number(),
  failed: z.object({ doc_count: z.number() }),
  reused: z.object({ doc_count: z.number() }),
  prompt_tokens: SumAgg,
  completion_tokens: SumAgg,
  latency_ms: SumAgg,
});
const ModelBuckets = z.object({ buckets: z.array(ModelBucket) });
const UserBucket = z.object({ key: z.string(), models: ModelBuckets });
const TenantBucket = z.object({
  key: z.string(),
  models: ModelBuckets.optional(),
  users: z.object({ buckets: z.array(UserBucket) }).optional(),
});
const TotalsAggs = z.object({ tenants: z.object({ buckets: z.array(TenantBucket) }) });

/**
 * The cost ledger of distributed mode, in Elasticsearch beside the memories, so every API replica and
 * `lightmem stats` see the calls of every stage service: `<prefix>llm-calls` holds each call (totals are
 * aggregations, per tenant exactly), `<prefix>llm-answers-<day>` the answers by request hash, read back
 * with a real-time multi-get so a summarizer restarted after a crash finds the answers recorded just
 * before it (not paid twice). Writes wait for the translog (durable when `record` resolves).
 */
export class ElasticsearchLlmLedger implements LlmLedger {
  private readonly calls: string;
  private readonly answersPrefix: string;
  private readonly now: () => number;
  private recorded = 0;

  private constructor(
    private readonly client: Client,
    private readonly options: ElasticsearchLlmLedgerOptions,
  ) {
    this.calls = `${options.indexPrefix}llm-calls`;
    this.answersPrefix = `${options.indexPrefix}llm-answers-`;
    this.now = options.now ?? Date.now;
  }

  static async open(options: ElasticsearchLlmLedgerOptions): Promise<ElasticsearchLlmLedger> {
    if (!(options.answerRetentionDays > 0)) {
      throw new LightmemError('config_invalid', 'answerRetentionDays must be positive', {
        field: 'llm.answerRetentionDays',
      });
    }
    const client = elasticsearchClient({
      node: options.node,
      security: options.security,
      requestTimeoutMs: options.requestTimeoutMs,
    });
    const ledger = new ElasticsearchLlmLedger(client, options);
    try {
      await ledger.ensureIndex(ledger.calls, callsMapping);
    } catch (error) {
      await client.close();
      throw esFailure(error, 'opening the LLM ledger');
    }
    return ledger;
  }

  async record(call: LlmCall): Promise<void> {
    const operations: object[] = [
      { create: { _index: this.calls, _id: call.callId } },
      {
        call_id: call.callId,
        request_hash: call.requestHash,
        tenant_id: call.tenantId,
        user_id: call.userId,
        conversation_id: call.conversationId,
        stage: call.stage,
        purpose: call.purpose,
        model: call.model,
        prompt_hash: call.promptHash,
        prompt_tokens: call.promptTokens,
        completion_tokens: call.completionTokens,
        latency_ms: Math.round(call.latencyMs),
        outcome: call.outcome,
        error: call.error,
        at: call.at,
      },
    ];
    const completion = call.completion;
    if (completion !== null && call.outcome !== 'reused') {
      const index = this.answersIndex(call.at);
      await this.ensureIndex(index, answersMapping);
      operations.push(
        { index: { _index: index, _id: call.requestHash } },
        {
          text: completion.text,
          prompt_tokens: completion.promptTokens,
          completion_tokens: completion.completionTokens,
          finish_reason: completion.finishReason,
          at: call.at,
        },
      );
    }
    let response;
    try {
      response = await this.client.bulk({ operations, refresh: false });
    } catch (error) {
      throw esFailure(error, 'recording an LLM call');
    }
    for (const item of response.items) {
      const result = item.create ?? item.index;
      // A call recorded twice (a retried write) is there already: that is success.
      if (result?.error !== undefined && result.status !== 409) {
        throw esFailure(
          new LightmemError('internal', `${result.error.type}: ${result.error.reason ?? ''}`),
          `recording an LLM call (HTTP ${result.status})`,
        );
      }
    }
    if (++this.recorded % pruneEvery === 0) await this.pruneAnswers();
  }

  async answerOf(requestHash: string): Promise<ChatCompletion | null> {
    const days = Math.ceil(this.options.answerRetentionDays);
    const today = this.now();
    const docs = Array.from({ length: days + 1 }, (_, back) => ({
      _index: this.answersIndex(today - back * dayMs),
      _id: requestHash,
    }));
    let response;
    try {
      response = await this.client.mget({ docs, realtime: true });
    } catch (error) {
      throw esFailure(error, 'reading an LLM answer');
    }
    let latest: z.infer<typeof AnswerDoc> | null = null;
    for (const doc of response.docs) {
      if (!('found' in doc) || !doc.found) continue;
      const answer = AnswerDoc.parse(doc._source);
      if (latest === null || answer.at > latest.at) latest = answer;
    }
    return latest === null
      ? null
      : {
          text: latest.text,
          promptTokens: latest.prompt_tokens,
          completionTokens: latest.completion_tokens,
          finishReason: latest.finish_reason,
        };
  }

  async totals(filter: LlmUsageFilter = {}): Promise<LlmUsageTotals[]> {
    const models = {
      terms: { field: 'model', size: 1_000 },
      aggs: {
        failed: { filter: { term: { outcome: 'failed' } } },
        reused: { filter: { term: { outcome: 'reused' } } },
        prompt_tokens: { sum: { field: 'prompt_tokens' } },
        completion_tokens: { sum: { field: 'completion_tokens' } },
        latency_ms: { sum: { field: 'latency_ms' } },
      },
    };
    const byUser = filter.byUser === true;
    let response;
    try {
      // Totals are read now and then (stats, the usage route): they see every call recorded before.
      await this.client.indices.refresh({ index: this.calls });
      response = await this.client.search({
        index: this.calls,
        size: 0,
        query: { bool: { filter: this.filters(filter.tenantId, filter.since) } },
        aggs: {
          tenants: {
            terms: { field: 'tenant_id', size: 10_000 },
            aggs: byUser
              ? { users: { terms: { field: 'user_id', size: 10_000 }, aggs: { models } } }
              : { models },
          },
        },
      });
    } catch (error) {
      throw esFailure(error, 'reading LLM usage');
    }
    const rows: LlmUsageTotals[] = [];
    const add = (tenantId: string, userId: string | undefined, bucket: z.infer<typeof ModelBucket>): void => {
      rows.push({
        tenantId,
        ...(userId === undefined ? {} : { userId }),
        model: bucket.key,
        calls: bucket.doc_count - bucket.reused.doc_count,
        failedCalls: bucket.failed.doc_count,
        reusedAnswers: bucket.reused.doc_count,
        promptTokens: bucket.prompt_tokens.value ?? 0,
        completionTokens: bucket.completion_tokens.value ?? 0,
        latencyMs: bucket.latency_ms.value ?? 0,
      });
    };
    for (const tenant of TotalsAggs.parse(response.aggregations).tenants.buckets) {
      for (const bucket of tenant.models?.buckets ?? []) add(tenant.key, undefined, bucket);
      for (const user of tenant.users?.buckets ?? [])
        for (const bucket of user.models.buckets) add(tenant.key, user.key, bucket);
    }
    const key = (row: LlmUsageTotals): string => `${row.tenantId}\u0000${row.userId ?? ''}\u0000${row.model}`;
    return rows.sort(
      (a, b) =>
        b.promptTokens + b.completionTokens - (a.promptTokens + a.completionTokens) ||
        (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0),
    );
  }

  async tokensSince(tenantId: string, since: number): Promise<number> {
    let response;
    try {
      response = await this.client.search({
        index: this.calls,
        size: 0,
        query: { bool: { filter: this.filters(tenantId, since) } },
        aggs: {
          prompt: { sum: { field: 'prompt_tokens' } },
          completion: { sum: { field: 'completion_tokens' } },
        },
      });
    } catch (error) {
      throw esFailure(error, 'reading LLM usage');
    }
    const aggs = z.object({ prompt: SumAgg, completion: SumAgg }).parse(response.aggregations);
    return (aggs.prompt.value ?? 0) + (aggs.completion.value ?? 0);
  }

  /**
   * Pages through the user's calls (search_after on call_id; the server may lack _update_by_query, which
   * is a module the test distribution does not ship) and, per page, deletes their answers (one document per
   * request hash in the answers index of the call's day) and strips the call records in one bulk request.
   * A crash between pages leaves the rest for the next run: the calls still name the user.
   */
  async eraseUser(tenantId: string, userId: string): Promise<number> {
    let erased = 0;
    try {
      await this.client.indices.refresh({ index: this.calls });
      let after: estypes.SortResults | undefined;
      for (;;) {
        const response = await this.client.search({
          index: this.calls,
          size: erasePage,
          _source: ['request_hash', 'at'],
          query: { bool: { filter: [{ term: { tenant_id: tenantId } }, { term: { user_id: userId } }] } },
          sort: [{ call_id: 'asc' }],
          ...(after === undefined ? {} : { search_after: after }),
        });
        const hits = response.hits.hits;
        if (hits.length === 0) break;
        const operations: object[] = [];
        for (const hit of hits) {
          const call = CallRef.parse(hit._source);
          if (call.request_hash !== erasedUserMarker) {
            operations.push({ delete: { _index: this.answersIndex(call.at), _id: call.request_hash } });
          }
          operations.push(
            { update: { _index: this.calls, _id: hit._id } },
            {
              doc: {
                user_id: erasedUserMarker,
                conversation_id: erasedUserMarker,
                request_hash: erasedUserMarker,
                error: null,
              },
            },
          );
        }
        const result = await this.client.bulk({ operations, refresh: false });
        for (const item of result.items) {
          const outcome = item.delete ?? item.update;
          // 404: an answer already pruned (or never kept), or an answers index of a day already deleted.
          if (outcome?.error !== undefined && outcome.status !== 404) {
            throw new LightmemError('internal', `${outcome.error.type}: ${outcome.error.reason ?? ''}`);
          }
          if (item.update !== undefined && item.update.error === undefined) erased++;
        }
        after = hits.at(-1)?.sort;
        if (hits.length < erasePage || after === undefined) break;
      }
      // Usage read right after (and a second erase) must not see the user any more.
      await this.client.indices.refresh({
        index: `${this.calls},${this.answersPrefix}*`,
        ignore_unavailable: true,
      });
    } catch (error) {
      throw esFailure(error, 'erasing a user from the LLM ledger');
    }
    return erased;
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private filters(tenantId: string | undefined, since: number | undefined): object[] {
    return [
      ...(tenantId === undefined ? [] : [{ term: { tenant_id: tenantId } }]),
      ...(since === undefined ? [] : [{ range: { at: { gte: since } } }]),
    ];
  }

  private answersIndex(at: number): string {
    return `${this.answersPrefix}${new Date(at).toISOString().slice(0, 10).replaceAll('-', '.')}`;
  }

  private readonly known = new Set<string>();

  private async ensureIndex(index: string, mappings: object): Promise<void> {
    if (this.known.has(index)) return;
    try {
      await this.client.indices.create({ index, mappings, settings: { number_of_replicas: 0 } });
    } catch (error) {
      if (errorTypeOf(error) !== 'resource_already_exists_exception')
        throw esFailure(error, `creating ${index}`);
    }
    this.known.add(index);
  }

  /** Deletes the answers indices of days past the retention (the call records stay). */
  private async pruneAnswers(): Promise<void> {
    const oldest = this.answersIndex(this.now() - Math.ceil(this.options.answerRetentionDays) * dayMs);
    const indices = await this.client.indices.get({
      index: `${this.answersPrefix}*`,
      expand_wildcards: 'open',
    });
    const expired = Object.keys(indices).filter((index) => index < oldest);
    if (expired.length > 0) {
      await this.client.indices.delete({ index: expired.join(',') });
      for (const index of expired) this.known.delete(index);
    }
  }
}
