import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type DecodeResult,
  type InputError,
  type TurnInput,
  MAX_TEXT_BYTES,
  decodeTurnInput,
  parseOccurredAt,
  truncateUtf8,
} from '../../services/ingest/turn-input.js';

const good = {
  tenantId: 'acme',
  userId: 'cust-42',
  conversationId: 'call-7',
  turnId: 'call-7:1',
  seq: 1,
  role: 'customer',
  speaker: 'Dana',
  text: 'My router keeps dropping the connection.',
  occurredAt: '2024-05-08T13:56:00+02:00',
};

function without<T extends object, K extends keyof T>(value: T, ...keys: K[]): Omit<T, K> {
  return Object.fromEntries(
    Object.entries(value).filter(([key]) => !(keys as PropertyKey[]).includes(key)),
  ) as Omit<T, K>;
}

function ok(result: DecodeResult): TurnInput {
  if (!result.ok) assert.fail(`expected ok, got ${result.error.field}: ${result.error.message}`);
  return result.event;
}

function problem(result: DecodeResult): InputError {
  if (result.ok) assert.fail(`expected an error, got ${JSON.stringify(result.event)}`);
  return result.error;
}

function assertProblem(result: DecodeResult, field: string, ...mentions: (string | RegExp)[]): void {
  const error = problem(result);
  assert.equal(error.field, field, error.message);
  for (const mention of mentions) {
    if (typeof mention === 'string')
      assert.ok(error.message.includes(mention), `"${error.message}" should mention ${mention}`);
    else assert.match(error.message, mention);
  }
}

describe('decodeTurnInput', () => {
  it('decodes a full event and keeps its fields', () => {
    const event = ok(decodeTurnInput({ ...good, agentId: 'agent-3', metadata: { channel: 'voice' } }, {}));
    assert.deepEqual(event, {
      kind: 'turn',
      tenantId: 'acme',
      userId: 'cust-42',
      agentId: 'agent-3',
      conversationId: 'call-7',
      sessionId: 'call-7',
      turnId: 'call-7:1',
      seq: 1,
      role: 'customer',
      speaker: 'Dana',
      text: 'My router keeps dropping the connection.',
      occurredAt: Date.UTC(2024, 4, 8, 11, 56),
      zoneOffset: '+02:00',
      metadata: { channel: 'voice' },
    });
  });

  it('applies defaults: kind, tenant, agent, session, speaker, metadata; ignores unknown fields', () => {
    const rest = without(good, 'tenantId', 'speaker');
    const event = ok(
      decodeTurnInput({ ...rest, role: 'ASSISTANT', extra: { anything: 1 } }, { tenantId: 'from-cli' }),
    );
    assert.equal(event.kind, 'turn');
    assert.equal(event.tenantId, 'from-cli');
    assert.equal(event.agentId, null);
    assert.equal(event.sessionId, 'call-7');
    assert.equal(event.role, 'assistant');
    assert.equal(event.speaker, 'assistant');
    assert.deepEqual(event.metadata, {});
    assert.equal('extra' in event, false);
    // null is as good as absent for optional fields
    const nulls = ok(
      decodeTurnInput({ ...good, agentId: null, sessionId: null, speaker: null, metadata: null }, {}),
    );
    assert.equal(nulls.sessionId, 'call-7');
    assert.equal(nulls.speaker, 'customer');
  });

  it('an item tenant wins over the default', () => {
    assert.equal(ok(decodeTurnInput(good, { tenantId: 'other' })).tenantId, 'acme');
  });

  it('derives turnId t<seq> when only seq is given, and seq from defaults when only turnId is given', () => {
    const noTurnId = without(good, 'turnId');
    const derived = ok(decodeTurnInput({ ...noTurnId, seq: 12 }, {}));
    assert.equal(derived.turnId, 't12');
    assert.equal(derived.seq, 12);
    const noSeq = without(good, 'seq');
    assert.equal(ok(decodeTurnInput(noSeq, { seq: 5 })).seq, 5);
    assert.equal(ok(decodeTurnInput(good, { seq: 5 })).seq, 1, 'an explicit seq wins');
    // a position-based default never invents a turn id for a turn: it would not be stable
    const neither = without(good, 'seq', 'turnId');
    assertProblem(decodeTurnInput(neither, { seq: 3 }), 'turnId', 'turnId is required', 'seq');
    assertProblem(decodeTurnInput(noSeq, {}), 'seq', 'seq is required', 'non-negative integer');
  });

  it('accepts control events without text or role', () => {
    const event = ok(
      decodeTurnInput(
        { kind: 'session_end', tenantId: 't1', userId: 'u1', conversationId: 'c1', occurredAt: 0 },
        { seq: 9 },
      ),
    );
    assert.equal(event.kind, 'session_end');
    assert.equal(event.text, '');
    assert.equal(event.role, 'system');
    assert.equal(event.turnId, 't9');
    assert.equal(event.seq, 9);
  });

  describe('keeps the zone offset of the input', () => {
    const cases: [string | number, number, string][] = [
      ['2024-05-08T13:56:00+02:00', Date.UTC(2024, 4, 8, 11, 56), '+02:00'],
      ['2024-05-08T13:56:00Z', Date.UTC(2024, 4, 8, 13, 56), '+00:00'],
      ['2024-05-08T13:56:00z', Date.UTC(2024, 4, 8, 13, 56), '+00:00'],
      ['2024-05-08T13:56:00.250-05:30', Date.UTC(2024, 4, 8, 19, 26, 0, 250), '-05:30'],
      ['2024-05-08T13:56:00+0530', Date.UTC(2024, 4, 8, 8, 26), '+05:30'],
      ['2024-05-08T13:56:00-03', Date.UTC(2024, 4, 8, 16, 56), '-03:00'],
      ['2024-05-08T13:56:00', Date.UTC(2024, 4, 8, 13, 56), '+00:00'], // no zone means UTC
      ['2024-05-08 13:56', Date.UTC(2024, 4, 8, 13, 56), '+00:00'],
      ['2024-05-08', Date.UTC(2024, 4, 8), '+00:00'],
      ['2024-05-08T13:56:00.123456789Z', Date.UTC(2024, 4, 8, 13, 56, 0, 123), '+00:00'],
      [1715176560000, 1715176560000, '+00:00'], // epoch milliseconds
      [0, 0, '+00:00'],
    ];
    for (const [input, occurredAt, zoneOffset] of cases) {
      it(`${JSON.stringify(input)} → ${zoneOffset}`, () => {
        const event = ok(decodeTurnInput({ ...good, occurredAt: input }, {}));
        assert.equal(event.occurredAt, occurredAt);
        assert.equal(event.zoneOffset, zoneOffset);
        assert.deepEqual(parseOccurredAt(input), { occurredAt, zoneOffset });
      });
    }
  });

  describe('names the field of every problem', () => {
    it('missing tenant without a default', () => {
      const rest = without(good, 'tenantId');
      assertProblem(decodeTurnInput(rest, {}), 'tenantId', 'tenantId is required', 'default tenant');
    });

    for (const value of [
      'yesterday',
      '2024-02-30T10:00:00Z',
      '2024-05-08T25:00:00Z',
      '08/05/2024',
      '2024-05-08T13:56:00+99:00',
    ]) {
      it(`unparsable timestamp ${value}`, () => {
        assertProblem(
          decodeTurnInput({ ...good, occurredAt: value }, {}),
          'occurredAt',
          JSON.stringify(value),
          'ISO-8601',
        );
      });
    }

    it('timestamp of the wrong type, fractional or missing', () => {
      assertProblem(
        decodeTurnInput({ ...good, occurredAt: true }, {}),
        'occurredAt',
        'ISO-8601',
        'epoch milliseconds',
      );
      assertProblem(decodeTurnInput({ ...good, occurredAt: 1.5 }, {}), 'occurredAt', 'milliseconds');
      const rest = without(good, 'occurredAt');
      assertProblem(decodeTurnInput(rest, {}), 'occurredAt', 'occurredAt is required');
    });

    it('2 MB text, with its size and the limit', () => {
      const text = 'x'.repeat(2 * 1024 * 1024);
      assertProblem(
        decodeTurnInput({ ...good, text }, {}),
        'text',
        '2.00 MiB',
        '2097152 bytes',
        '1 MiB',
        String(MAX_TEXT_BYTES),
      );
    });

    it('text limit counts UTF-8 bytes, not characters', () => {
      const justUnder = 'é'.repeat(MAX_TEXT_BYTES / 2); // 2 bytes each: exactly the limit
      assert.equal(ok(decodeTurnInput({ ...good, text: justUnder }, {})).text.length, MAX_TEXT_BYTES / 2);
      assertProblem(
        decodeTurnInput({ ...good, text: `${justUnder}é` }, {}),
        'text',
        `${MAX_TEXT_BYTES + 2} bytes`,
      );
    });

    it('missing, non-string or empty text of a turn', () => {
      const rest = without(good, 'text');
      assertProblem(decodeTurnInput(rest, {}), 'text', 'text is required');
      assertProblem(decodeTurnInput({ ...good, text: 42 }, {}), 'text', 'text must be a string', 'number 42');
      assertProblem(decodeTurnInput({ ...good, text: '  ' }, {}), 'text', 'non-empty');
    });

    it('unknown role, listing the allowed values', () => {
      assertProblem(
        decodeTurnInput({ ...good, role: 'bot' }, {}),
        'role',
        '"bot"',
        'user, assistant, customer, agent, supervisor, system, tool',
      );
      const rest = without(good, 'role');
      assertProblem(decodeTurnInput(rest, {}), 'role', 'role is required', 'user, assistant');
    });

    it('bad metadata value, with its dotted path', () => {
      assertProblem(
        decodeTurnInput({ ...good, metadata: { channel: 'voice', priority: 3 } }, {}),
        'metadata.priority',
        'metadata.priority must be a string',
        'number 3',
      );
      assertProblem(
        decodeTurnInput({ ...good, metadata: ['a'] }, {}),
        'metadata',
        'object mapping strings to strings',
      );
    });

    it('bad ids', () => {
      assertProblem(
        decodeTurnInput({ ...good, userId: 'has space' }, {}),
        'userId',
        'userId must be',
        '"has space"',
      );
      assertProblem(
        decodeTurnInput({ ...good, conversationId: '' }, {}),
        'conversationId',
        'conversationId must be',
      );
      assertProblem(
        decodeTurnInput({ ...good, turnId: 'x'.repeat(201) }, {}),
        'turnId',
        'turnId must be',
        '200',
      );
      assertProblem(decodeTurnInput({ ...good, agentId: 'a\nb' }, {}), 'agentId', 'agentId must be');
      assertProblem(decodeTurnInput({ ...good, sessionId: 'a b' }, {}), 'sessionId', 'sessionId must be');
      assertProblem(decodeTurnInput({ ...good, tenantId: 'acme corp' }, {}), 'tenantId', 'tenantId must be');
      assertProblem(
        decodeTurnInput({ ...good, tenantId: undefined }, { tenantId: 'bad tenant' }),
        'tenantId',
        '"bad tenant"',
      );
      assertProblem(
        decodeTurnInput({ ...good, userId: 7 }, {}),
        'userId',
        'userId must be a string id',
        'number 7',
      );
      const rest = without(good, 'userId');
      assertProblem(decodeTurnInput(rest, {}), 'userId', 'userId is required');
    });

    it('bad seq, kind and speaker', () => {
      assertProblem(decodeTurnInput({ ...good, seq: -1 }, {}), 'seq', 'non-negative integer');
      assertProblem(decodeTurnInput({ ...good, seq: 1.5 }, {}), 'seq', 'non-negative integer');
      assertProblem(decodeTurnInput({ ...good, seq: '3' }, {}), 'seq', 'non-negative integer', 'string "3"');
      assertProblem(decodeTurnInput({ ...good, kind: 'end' }, {}), 'kind', 'turn, session_end, flush');
      assertProblem(decodeTurnInput({ ...good, speaker: 'x'.repeat(201) }, {}), 'speaker', '200 characters');
    });

    it('an item that is not an object', () => {
      for (const raw of [null, 'text', 3, ['a']])
        assertProblem(decodeTurnInput(raw, {}), '(root)', 'JSON object');
    });

    it('reports only the first problem, in field order', () => {
      const rest = without(good, 'tenantId');
      assertProblem(
        decodeTurnInput({ ...rest, userId: 'a b', role: 'bot', occurredAt: 'never' }, { tenantId: 't' }),
        'userId',
      );
      assertProblem(decodeTurnInput({ ...good, role: 'bot', occurredAt: 'never' }, {}), 'role');
    });
  });
});

describe('truncateUtf8', () => {
  it('keeps short text and cuts long text on a character boundary', () => {
    assert.equal(truncateUtf8('héllo', 100), 'héllo');
    const cut = truncateUtf8('é'.repeat(10), 5); // 2-byte characters: 5 bytes hold two and a half
    assert.equal(cut, 'éé');
    assert.ok(Buffer.byteLength(truncateUtf8('x'.repeat(100_000))) <= 64 * 1024);
  });
});
