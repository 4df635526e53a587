import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kafkaClusterId } from '../../infra/servers/kafka.js';

describe('infra: the Kafka cluster id', () => {
  it('is 16 random bytes in URL-safe base64 that never start with "-" (the storage tool reads that as an option)', () => {
    const ids = Array.from({ length: 5_000 }, () => kafkaClusterId());
    for (const id of ids) assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    assert.equal(new Set(ids).size, ids.length);
  });
});
