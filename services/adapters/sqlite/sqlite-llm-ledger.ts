import type { ChatCompletion, FinishReason } from '../../core/ports/chat-model.js';
import {
  erasedUserMarker,
  type LlmCall,
  type LlmLedger,
  type LlmUsageFilter,
  type LlmUsageTotals,
} from '../../core/ports/llm-ledger.js';
import {
  checkpointAfterErasure,
  migrate,
  openDatabase,
  storageError,
  writeTransaction,
  type Migration,
  type SqliteDatabase,
} from './database.js';

const migrations: Migration[] = [
  `
  CREATE TABLE llm_calls (
    call_id TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_hash TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'malformed', 'truncated', 'failed', 'reused')),
    error TEXT,
    at INTEGER NOT NULL,
    -- The answer (kept for answerRetentionMs, then set to null): a redone batch reads it instead of paying.
    answer_text TEXT,
    answer_prompt_tokens INTEGER,
    answer_completion_tokens INTEGER,
    finish_reason TEXT
  ) STRICT;
  CREATE INDEX llm_calls_request ON llm_calls (request_hash, at);
  CREATE INDEX llm_calls_tenant_time ON llm_calls (tenant_id, at);
  CREATE INDEX llm_calls_answers ON llm_calls (at) WHERE answer_text IS NOT NULL;
  `,
  // 2: a user's calls by index (erasure).
  `CREATE INDEX llm_calls_user ON llm_calls (tenant_id, user_id);`,
];

export interface SqliteLlmLedgerOptions {
  /** How long answers are kept for reuse (the tokens and outcome stay for good); default 7 days. */
  readonly answerRetentionMs?: number;
  readonly busyTimeoutMs?: number;
  /** The clock that ages answers (default Date.now). */
  readonly now?: () => number;
}

interface AnswerRow {
  answer_text: string;
  answer_prompt_tokens: number;
  answer_completion_tokens: number;
  finish_reason: string;
}

interface TotalsRow {
  tenant_id: string;
  user_id: string | null;
  model: string;
  calls: number;
  failed: number;
  reused: number;
  prompt_tokens: number;
  completion_tokens: number;
  latency_ms: number;
}

const pruneEvery = 256;

/** The embedded cost ledger: one SQLite file (`ledger.db` in the data dir), written before a batch commits. */
export class SqliteLlmLedger implements LlmLedger {
  private readonly statements;
  private readonly answerRetentionMs: number;
  private readonly now: () => number;
  private recorded = 0;

  private constructor(
    private readonly db: SqliteDatabase,
    options: SqliteLlmLedgerOptions,
  ) {
    this.answerRetentionMs = options.answerRetentionMs ?? 7 * 24 * 3_600_000;
    this.now = options.now ?? Date.now;
    this.statements = {
      insert: db.prepare(
        `INSERT OR IGNORE INTO llm_calls (call_id, request_hash, tenant_id, user_id, conversation_id, stage, purpose, model, prompt_hash,
           prompt_tokens, completion_tokens, latency_ms, outcome, error, at, answer_text, answer_prompt_tokens,
           answer_completion_tokens, finish_reason)
         VALUES (@callId, @requestHash, @tenantId, @userId, @conversationId, @stage, @purpose, @model, @promptHash, @promptTokens,
           @completionTokens, @latencyMs, @outcome, @error, @at, @answerText, @answerPromptTokens,
           @answerCompletionTokens, @finishReason)`,
      ),
      answer: db.prepare<[string], AnswerRow>(
        `SELECT answer_text, answer_prompt_tokens, answer_completion_tokens, finish_reason FROM llm_calls
         WHERE request_hash = ? AND answer_text IS NOT NULL ORDER BY at DESC LIMIT 1`,
      ),
      prune: db.prepare<[number]>(
        'UPDATE llm_calls SET answer_text = NULL WHERE answer_text IS NOT NULL AND at < ?',
      ),
      eraseUser: db.prepare<[string, string, string, string, string]>(
        `UPDATE llm_calls SET user_id = ?, conversation_id = ?, request_hash = ?, error = NULL, answer_text = NULL,
           answer_prompt_tokens = NULL, answer_completion_tokens = NULL, finish_reason = NULL
         WHERE tenant_id = ? AND user_id = ?`,
      ),
      tokensSince: db.prepare<[string, number], { tokens: number | null }>(
        `SELECT SUM(prompt_tokens + completion_tokens) AS tokens FROM llm_calls WHERE tenant_id = ? AND at >= ?`,
      ),
    };
  }

  static open(file: string, options: SqliteLlmLedgerOptions = {}): SqliteLlmLedger {
    const db = openDatabase(
      file,
      options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs },
    );
    try {
      // Erasure must not leave the answers it deleted readable in free pages of the file.
      db.pragma('secure_delete = ON');
      migrate(db, migrations);
    } catch (error) {
      db.close();
      throw storageError(error, `opening the LLM ledger ${file}`);
    }
    return new SqliteLlmLedger(db, options);
  }

  record(call: LlmCall): Promise<void> {
    const completion = call.completion;
    writeTransaction(this.db, 'recording an LLM call', () => {
      this.statements.insert.run({
        callId: call.callId,
        requestHash: call.requestHash,
        tenantId: call.tenantId,
        userId: call.userId,
        conversationId: call.conversationId,
        stage: call.stage,
        purpose: call.purpose,
        model: call.model,
        promptHash: call.promptHash,
        promptTokens: call.promptTokens,
        completionTokens: call.completionTokens,
        latencyMs: Math.round(call.latencyMs),
        outcome: call.outcome,
        error: call.error,
        at: call.at,
        answerText: call.outcome === 'reused' ? null : (completion?.text ?? null),
        answerPromptTokens: completion?.promptTokens ?? null,
        answerCompletionTokens: completion?.completionTokens ?? null,
        finishReason: completion?.finishReason ?? null,
      });
      if (++this.recorded % pruneEvery === 0) this.statements.prune.run(this.now() - this.answerRetentionMs);
    });
    return Promise.resolve();
  }

  answerOf(requestHash: string): Promise<ChatCompletion | null> {
    const row = this.statements.answer.get(requestHash);
    if (row === undefined) return Promise.resolve(null);
    return Promise.resolve({
      text: row.answer_text,
      promptTokens: row.answer_prompt_tokens,
      completionTokens: row.answer_completion_tokens,
      finishReason: (['stop', 'length', 'other'].includes(row.finish_reason)
        ? row.finish_reason
        : 'other') as FinishReason,
    });
  }

  totals(filter: LlmUsageFilter = {}): Promise<LlmUsageTotals[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (filter.tenantId !== undefined) {
      where.push('tenant_id = ?');
      params.push(filter.tenantId);
    }
    if (filter.since !== undefined) {
      where.push('at >= ?');
      params.push(filter.since);
    }
    const group = filter.byUser === true ? 'tenant_id, user_id, model' : 'tenant_id, model';
    const rows = this.db
      .prepare<(string | number)[], TotalsRow>(
        `SELECT tenant_id, ${filter.byUser === true ? 'user_id' : 'NULL AS user_id'}, model,
           SUM(outcome != 'reused') AS calls, SUM(outcome = 'failed') AS failed, SUM(outcome = 'reused') AS reused,
           SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens,
           SUM(latency_ms) AS latency_ms
         FROM llm_calls ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`}
         GROUP BY ${group} ORDER BY SUM(prompt_tokens + completion_tokens) DESC, ${group}`,
      )
      .all(...params);
    return Promise.resolve(
      rows.map((row) => ({
        tenantId: row.tenant_id,
        ...(row.user_id === null ? {} : { userId: row.user_id }),
        model: row.model,
        calls: row.calls,
        failedCalls: row.failed,
        reusedAnswers: row.reused,
        promptTokens: row.prompt_tokens,
        completionTokens: row.completion_tokens,
        latencyMs: row.latency_ms,
      })),
    );
  }

  tokensSince(tenantId: string, since: number): Promise<number> {
    return Promise.resolve(this.statements.tokensSince.get(tenantId, since)?.tokens ?? 0);
  }

  async eraseUser(tenantId: string, userId: string): Promise<number> {
    const m = erasedUserMarker;
    const erased = writeTransaction(
      this.db,
      'erasing a user from the LLM ledger',
      () => this.statements.eraseUser.run(m, m, m, tenantId, userId).changes,
    );
    if (erased > 0) checkpointAfterErasure(this.db);
    return Promise.resolve(erased);
  }

  close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }
}
