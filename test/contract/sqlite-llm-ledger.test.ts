import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteLlmLedger } from '../../services/adapters/sqlite/sqlite-llm-ledger.js';
import type { LlmLedger } from '../../services/core/ports/llm-ledger.js';
import { llmLedgerContract } from './llm-ledger.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'lightmem-ledger-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const paths = new WeakMap<LlmLedger, string>();

llmLedgerContract('SqliteLlmLedger', {
  open: () => {
    const file = join(dir, `ledger-${++files}.db`);
    const ledger = SqliteLlmLedger.open(file);
    paths.set(ledger, file);
    return Promise.resolve(ledger);
  },
  reopen: async (ledger) => {
    const file = paths.get(ledger) ?? '';
    await ledger.close();
    const again = SqliteLlmLedger.open(file);
    paths.set(again, file);
    return again;
  },
});

describe('SqliteLlmLedger', () => {
  it('drops answers past their retention (the tokens and outcomes stay)', async () => {
    let now = 10_000_000;
    const ledger = SqliteLlmLedger.open(join(dir, 'retention.db'), {
      answerRetentionMs: 1_000,
      now: () => now,
    });
    try {
      const base = {
        tenantId: 't',
        userId: 'u',
        conversationId: 'c',
        stage: 'summarizer',
        purpose: 'extract',
        model: 'm',
        promptHash: null,
        promptTokens: 10,
        completionTokens: 1,
        latencyMs: 1,
        outcome: 'ok' as const,
        error: null,
        completion: { text: 'answer', promptTokens: 10, completionTokens: 1, finishReason: 'stop' as const },
      };
      await ledger.record({ ...base, callId: 'old', requestHash: 'old', at: now });
      now += 5_000;
      // Pruning runs every 256 records.
      for (let i = 0; i < 256; i++)
        await ledger.record({ ...base, callId: `n${i}`, requestHash: `n${i}`, at: now });
      assert.equal(await ledger.answerOf('old'), null);
      assert.notEqual(await ledger.answerOf('n0'), null);
      assert.equal((await ledger.totals())[0]?.calls, 257);
    } finally {
      await ledger.close();
    }
  });
});
