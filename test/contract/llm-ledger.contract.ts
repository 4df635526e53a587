import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { erasedUserMarker, type LlmCall, type LlmLedger } from '../../services/core/ports/llm-ledger.js';

/** What every LlmLedger must do. `open` gives a fresh ledger; `reopen` the same one after a restart. */
export function llmLedgerContract(
  name: string,
  fixture: { open: () => Promise<LlmLedger>; reopen: (ledger: LlmLedger) => Promise<LlmLedger> },
): void {
  let calls = 0;
  const call = (overrides: Partial<LlmCall> = {}): LlmCall => ({
    callId: `call-${++calls}`,
    requestHash: `req-${calls}`,
    tenantId: 'brand-a',
    userId: 'cust-1',
    conversationId: 'call-9',
    stage: 'summarizer',
    purpose: 'extract',
    model: 'small-model',
    promptHash: 'abc123',
    promptTokens: 100,
    completionTokens: 20,
    latencyMs: 350,
    outcome: 'ok',
    error: null,
    at: 1_700_000_000_000,
    completion: { text: '{"data": []}', promptTokens: 100, completionTokens: 20, finishReason: 'stop' },
    ...overrides,
  });

  describe(`${name} (LlmLedger contract)`, () => {
    it('totals calls and tokens per tenant and model; failed calls counted, reused answers not paid', async () => {
      const ledger = await fixture.open();
      try {
        await ledger.record(call());
        await ledger.record(call({ promptTokens: 50, completionTokens: 5 }));
        await ledger.record(
          call({
            outcome: 'failed',
            promptTokens: 0,
            completionTokens: 0,
            completion: null,
            error: 'HTTP 503',
          }),
        );
        await ledger.record(call({ outcome: 'reused', promptTokens: 0, completionTokens: 0 }));
        await ledger.record(call({ tenantId: 'brand-b', model: 'big-model', promptTokens: 1_000 }));
        const totals = await ledger.totals();
        assert.deepEqual(
          totals.map((t) => [
            t.tenantId,
            t.model,
            t.calls,
            t.failedCalls,
            t.reusedAnswers,
            t.promptTokens,
            t.completionTokens,
          ]),
          [
            ['brand-b', 'big-model', 1, 0, 0, 1_000, 20],
            ['brand-a', 'small-model', 3, 1, 1, 150, 25],
          ],
        );
        const onlyA = await ledger.totals({ tenantId: 'brand-a' });
        assert.deepEqual(
          onlyA.map((t) => t.tenantId),
          ['brand-a'],
          "a tenant's totals hold nothing of another's",
        );
      } finally {
        await ledger.close();
      }
    });

    it('groups by user and filters by time', async () => {
      const ledger = await fixture.open();
      try {
        await ledger.record(call({ userId: 'cust-1', at: 1_000 }));
        await ledger.record(call({ userId: 'cust-2', at: 2_000 }));
        await ledger.record(call({ userId: 'cust-2', at: 3_000 }));
        const byUser = await ledger.totals({ byUser: true });
        assert.deepEqual(
          byUser.map((t) => [t.userId, t.calls]),
          [
            ['cust-2', 2],
            ['cust-1', 1],
          ],
        );
        const recent = await ledger.totals({ since: 2_000 });
        assert.equal(recent[0]?.calls, 2);
        assert.equal(await ledger.tokensSince('brand-a', 2_500), 120);
        assert.equal(await ledger.tokensSince('brand-b', 0), 0);
      } finally {
        await ledger.close();
      }
    });

    it('keeps answers durably: the answer of a request is there after a restart; a failed call has none', async () => {
      let ledger = await fixture.open();
      try {
        await ledger.record(
          call({
            requestHash: 'same',
            completion: { text: 'first', promptTokens: 1, completionTokens: 1, finishReason: 'length' },
          }),
        );
        await ledger.record(
          call({
            requestHash: 'same',
            at: 1_700_000_000_001,
            completion: { text: 'second', promptTokens: 1, completionTokens: 1, finishReason: 'stop' },
          }),
        );
        await ledger.record(call({ requestHash: 'down', outcome: 'failed', completion: null }));
        ledger = await fixture.reopen(ledger);
        assert.deepEqual(await ledger.answerOf('same'), {
          text: 'second',
          promptTokens: 1,
          completionTokens: 1,
          finishReason: 'stop',
        });
        assert.equal(await ledger.answerOf('down'), null);
        assert.equal(await ledger.answerOf('never'), null);
      } finally {
        await ledger.close();
      }
    });

    it('recording the same call id twice counts it once (a retried write)', async () => {
      const ledger = await fixture.open();
      try {
        const once = call();
        await ledger.record(once);
        await ledger.record(once);
        assert.equal((await ledger.totals())[0]?.calls, 1);
      } finally {
        await ledger.close();
      }
    });

    it("erasing a user deletes their answers and name, and keeps the tenant's tokens", async () => {
      const ledger = await fixture.open();
      try {
        const answer = (text: string) => ({
          text,
          promptTokens: 1,
          completionTokens: 1,
          finishReason: 'stop' as const,
        });
        await ledger.record(
          call({ userId: 'cust-1', requestHash: 'h-1', completion: answer('cust-1 owes 40 EUR') }),
        );
        await ledger.record(
          call({ userId: 'cust-1', requestHash: 'h-2', outcome: 'failed', completion: null }),
        );
        await ledger.record(
          call({ userId: 'cust-2', requestHash: 'h-3', completion: answer('cust-2 fact') }),
        );
        await ledger.record(
          call({ tenantId: 'brand-b', userId: 'cust-1', requestHash: 'h-4', completion: answer('b') }),
        );
        const before = await ledger.totals({ tenantId: 'brand-a' });
        assert.equal(await ledger.eraseUser('brand-a', 'cust-1'), 2);
        assert.equal(await ledger.answerOf('h-1'), null, "the user's answer is gone");
        assert.equal((await ledger.answerOf('h-3'))?.text, 'cust-2 fact');
        assert.equal(
          (await ledger.answerOf('h-4'))?.text,
          'b',
          "another tenant's user of that id is not erased",
        );
        const byUser = await ledger.totals({ tenantId: 'brand-a', byUser: true });
        assert.deepEqual(byUser.map((t) => t.userId).sort(), [erasedUserMarker, 'cust-2']);
        const after = await ledger.totals({ tenantId: 'brand-a' });
        assert.deepEqual(
          after.map((t) => [t.calls, t.failedCalls, t.promptTokens, t.completionTokens]),
          before.map((t) => [t.calls, t.failedCalls, t.promptTokens, t.completionTokens]),
          'the bill stays the same',
        );
        assert.equal(await ledger.eraseUser('brand-a', 'cust-1'), 0, 'again: nothing left');
      } finally {
        await ledger.close();
      }
    });
  });
}
