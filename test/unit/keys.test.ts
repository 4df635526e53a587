import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compositeKey, eventDedupKey } from '../../services/core/model/keys.js';
import { conversationKey } from '../../services/core/model/topics.js';
import { memoryKey } from '../../services/stages/summarizer/summarizer-stage.js';

const event = (tenantId: string, userId: string, conversationId: string, turnId: string) => ({
  kind: 'turn' as const,
  tenantId,
  userId,
  conversationId,
  turnId,
});

describe('keys built from several ids', () => {
  it('never give two different lists of ids the same key ("/" may be in an id)', () => {
    assert.notEqual(
      eventDedupKey(event('acme/x', 'c', 'd', '1')),
      eventDedupKey(event('acme', 'x', 'c/d', '1')),
    );
    assert.notEqual(
      conversationKey({ tenantId: 'a/b', conversationId: 'c' }),
      conversationKey({ tenantId: 'a', conversationId: 'b/c' }),
    );
    assert.notEqual(memoryKey({ tenantId: 'a/b', userId: 'c' }), memoryKey({ tenantId: 'a', userId: 'b/c' }));
    const lists = [
      ['a/b', 'c'],
      ['a', 'b/c'],
      ['a%2Fb', 'c'],
      ['a', 'b', 'c'],
      ['a/', 'b'],
      ['a', '/b'],
      ['', 'a/b'],
    ];
    const keys = lists.map(compositeKey);
    assert.equal(new Set(keys).size, lists.length, keys.join(' | '));
  });

  it('are what version 1 wrote for ids without "/" (topics and data dirs keep their keys)', () => {
    assert.equal(
      eventDedupKey(event('default', 'conv-26', 'conv-26', 'D1:3')),
      'default/conv-26/conv-26/D1:3',
    );
    assert.equal(conversationKey({ tenantId: 'acme', conversationId: 'call-7' }), 'acme/call-7');
  });

  it('give control events their own namespace: no turn id can stand in for them', () => {
    const flush = { ...event('t', 'u', 'c', 'flush-after:9'), kind: 'flush' as const };
    assert.notEqual(eventDedupKey(flush), eventDedupKey(event('t', 'u', 'c', 'flush-after:9')));
    const end = { ...event('t', 'u', 'c', 'session-end:s1@7'), kind: 'session_end' as const };
    assert.notEqual(eventDedupKey(end), eventDedupKey(event('t', 'u', 'c', 'session-end:s1@7')));
  });
});
