import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LightmemError, StorageBusyError, errorFields } from '../../services/core/errors.js';

describe('errorFields: what a log line says about an error', () => {
  it('carries our code, the retryable flag, the field and the chain of causes', () => {
    const socket = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9092'), { code: 'ECONNREFUSED' });
    const wrapped = new LightmemError('storage_unavailable', 'the event log is unreachable', {
      retryable: true,
      cause: new Error('broker list exhausted', { cause: socket }),
    });
    assert.deepEqual(errorFields(wrapped), {
      error: 'the event log is unreachable',
      code: 'storage_unavailable',
      retryable: true,
      cause: 'Error: broker list exhausted ← Error ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9092',
    });
    const invalid = new LightmemError('invalid_input', 'bad turn', { field: 'events.0.text' });
    assert.deepEqual(errorFields(invalid), {
      error: 'bad turn',
      code: 'invalid_input',
      retryable: false,
      field: 'events.0.text',
    });
    assert.equal(errorFields(new StorageBusyError('database is locked')).retryable, true);
  });

  it('names an error that is not ours by its library code, else internal, and is never retryable', () => {
    const library = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    assert.deepEqual(errorFields(library), { error: 'socket hang up', code: 'ECONNRESET', retryable: false });
    assert.deepEqual(errorFields(new TypeError('x is undefined')), {
      error: 'x is undefined',
      code: 'internal',
      retryable: false,
    });
    assert.deepEqual(errorFields('a string'), { error: 'a string', code: 'internal', retryable: false });
  });
});
