import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withTimeout } from '../../services/core/deadline.js';
import { UnavailableError } from '../../services/core/errors.js';

describe('withTimeout', () => {
  it('passes through what settles in time, value or error', async () => {
    assert.equal(await withTimeout(Promise.resolve(7), 1_000, () => new Error('late')), 7);
    await assert.rejects(
      withTimeout(Promise.reject(new Error('own')), 1_000, () => new Error('late')),
      /own/,
    );
  });

  it('fails with the given error when the work never settles', async () => {
    const started = Date.now();
    await assert.rejects(
      withTimeout(new Promise(() => undefined), 50, () => new UnavailableError('no answer')),
      (error) => error instanceof UnavailableError && error.retryable,
    );
    assert.ok(Date.now() - started < 1_000);
  });
});
