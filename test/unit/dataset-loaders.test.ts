import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTick } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { InvalidInputError } from '../../services/core/errors.js';
import {
  type DatasetFormat,
  type InputItem,
  type TurnInput,
  loadDataset,
  longMemEvalSourceId,
  parseLocomoDateTime,
  parseLongMemEvalDate,
  readJsonArray,
} from '../../services/ingest/index.js';
import { sharedData } from '../support/cli.js';

const data = sharedData;
const locomoPath = join(data, 'locomo-dev.json');
const oraclePath = join(data, 'longmemeval-oracle-dev.json');
const longMemEvalSPath = join(data, 'longmemeval-s-dev.json.gz');

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'lightmem-ingest-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function tempFile(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

async function collect(
  path: string,
  format: DatasetFormat,
  defaults: { tenantId?: string } = {},
): Promise<InputItem[]> {
  const items: InputItem[] = [];
  for await (const item of loadDataset(path, format, defaults)) items.push(item);
  return items;
}

function events(items: readonly InputItem[]): TurnInput[] {
  return items.flatMap((item) => (item.result.ok ? [item.result.event] : []));
}

function errors(
  items: readonly InputItem[],
): { label: string; line: number | null; field: string; message: string }[] {
  return items.flatMap((item) =>
    item.result.ok ? [] : [{ label: item.label, line: item.line, ...item.result.error }],
  );
}

function countBy<T>(values: readonly T[], key: (value: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(key(value), (counts.get(key(value)) ?? 0) + 1);
  return counts;
}

/** Waits (by turns of the event loop, not by time) until the process holds no file or zlib handle. */
async function fileHandlesReleased(): Promise<boolean> {
  const busy = () =>
    process.getActiveResourcesInfo().some((name) => name === 'FSReqCallback' || /zlib/i.test(name));
  for (let i = 0; i < 1000 && busy(); i++) await nextTick();
  return !busy();
}

describe('date parsers', () => {
  it('parseLocomoDateTime reads LoCoMo session times as UTC', () => {
    assert.equal(parseLocomoDateTime('1:56 pm on 8 May, 2023'), Date.UTC(2023, 4, 8, 13, 56));
    assert.equal(parseLocomoDateTime('12:09 am on 13 September, 2023'), Date.UTC(2023, 8, 13, 0, 9));
    assert.equal(parseLocomoDateTime('12:30 pm on 1 January, 2024'), Date.UTC(2024, 0, 1, 12, 30));
    assert.equal(parseLocomoDateTime('10:37 AM on 27 Jun 2023'), Date.UTC(2023, 5, 27, 10, 37));
    for (const bad of [
      '13:00 pm on 8 May, 2023',
      '1:56 pm on 31 April, 2023',
      '2023-05-08',
      '1:56 pm on 8 Mayo, 2023',
    ]) {
      assert.throws(() => parseLocomoDateTime(bad), InvalidInputError, bad);
    }
  });

  it('parseLongMemEvalDate reads LongMemEval dates as UTC', () => {
    assert.equal(parseLongMemEvalDate('2023/05/20 (Sat) 02:21'), Date.UTC(2023, 4, 20, 2, 21));
    assert.equal(parseLongMemEvalDate('2023-05-20 (Sat) 02:21:09'), Date.UTC(2023, 4, 20, 2, 21, 9));
    assert.equal(parseLongMemEvalDate('2023/05/20 02:21'), Date.UTC(2023, 4, 20, 2, 21));
    for (const bad of [
      '2023/02/30 (Thu) 10:00',
      '2023/05/20 (Sat)',
      'May 20, 2023',
      '2023/05/20 (Sat) 24:10',
    ]) {
      assert.throws(() => parseLongMemEvalDate(bad), InvalidInputError, bad);
    }
  });
});

describe('LoCoMo loader (shared dev file)', () => {
  let items: InputItem[];
  let turns: TurnInput[];
  const file = JSON.parse(readFileSync(locomoPath, 'utf8')) as {
    sample_id: string;
    conversation: Record<string, unknown>;
  }[];
  before(async () => {
    items = await collect(locomoPath, 'locomo');
    turns = events(items);
  });

  it('loads every turn of the 6 samples, one user each, without errors', () => {
    assert.deepEqual(errors(items), []);
    assert.equal(file.length, 6);
    const perSample = countBy(turns, (turn) => turn.userId);
    assert.deepEqual(Object.fromEntries(perSample), {
      'conv-26': 419,
      'conv-30': 369,
      'conv-41': 663,
      'conv-42': 629,
      'conv-43': 680,
      'conv-44': 675,
    });
    assert.equal(turns.length, 3435);
    for (const turn of turns) {
      assert.equal(turn.conversationId, turn.userId);
      assert.equal(turn.tenantId, 'default');
      assert.equal(turn.role, 'user');
      assert.equal(turn.kind, 'turn');
      assert.deepEqual(turn.metadata, {});
    }
  });

  it('counts per sample equal the session_N arrays of the file (not the extra date keys)', () => {
    for (const sample of file) {
      const expected = Object.entries(sample.conversation)
        .filter(([key, value]) => /^session_\d+$/.test(key) && Array.isArray(value))
        .reduce((sum, [, value]) => sum + (value as unknown[]).length, 0);
      assert.equal(
        turns.filter((turn) => turn.userId === sample.sample_id).length,
        expected,
        sample.sample_id,
      );
    }
  });

  it('conv-26 D1:3 is Caroline on the LGBTQ support group', () => {
    const turn = turns.find((t) => t.userId === 'conv-26' && t.turnId === 'D1:3');
    assert.ok(turn);
    assert.equal(turn.speaker, 'Caroline');
    assert.equal(turn.sessionId, 'session_1');
    assert.match(turn.text, /LGBTQ support group/);
    assert.equal(turn.seq, 2);
  });

  it('session times are parsed, plus one second per turn index', () => {
    // conv-26 session_1_date_time is "1:56 pm on 8 May, 2023"
    const session1 = turns.filter((t) => t.userId === 'conv-26' && t.sessionId === 'session_1');
    assert.equal(session1[0]?.turnId, 'D1:1');
    assert.equal(session1[0]?.occurredAt, Date.UTC(2023, 4, 8, 13, 56, 0));
    assert.equal(session1[2]?.occurredAt, Date.UTC(2023, 4, 8, 13, 56, 2));
    assert.equal(session1[0]?.zoneOffset, '+00:00');
    // "12:09 am on 13 September, 2023"
    const session16 = turns.find((t) => t.userId === 'conv-26' && t.sessionId === 'session_16');
    assert.equal(session16?.occurredAt, Date.UTC(2023, 8, 13, 0, 9));
  });

  it('sessions come in numeric order, seq runs across the sample, times increase within a session', () => {
    const conv26 = turns.filter((t) => t.userId === 'conv-26');
    assert.deepEqual(
      conv26.map((t) => t.seq),
      conv26.map((_, i) => i),
    );
    const sessionOrder = [...new Set(conv26.map((t) => t.sessionId))];
    assert.deepEqual(
      sessionOrder,
      Array.from({ length: 19 }, (_, i) => `session_${i + 1}`),
    );
    for (let i = 1; i < conv26.length; i++) {
      const [previous, current] = [conv26[i - 1], conv26[i]];
      if (previous?.sessionId === current?.sessionId)
        assert.ok((current?.occurredAt ?? 0) > (previous?.occurredAt ?? 0));
    }
    assert.equal(new Set(conv26.map((t) => t.turnId)).size, conv26.length);
  });

  it('appends image captions and never feeds observations, summaries or QA', () => {
    const d15 = turns.find((t) => t.userId === 'conv-26' && t.turnId === 'D1:5');
    assert.equal(
      d15?.text,
      'The transgender stories were so inspiring! I was so happy and thankful for all the support. ' +
        '[shares an image: a photo of a dog walking past a wall with a painting of a woman]',
    );
    // Every fed text is a session turn's text (+ caption): nothing from observation, summaries or qa.
    const turnTexts = new Set(
      file.flatMap((sample) =>
        Object.entries(sample.conversation)
          .filter(([key, value]) => /^session_\d+$/.test(key) && Array.isArray(value))
          .flatMap(([, value]) =>
            (value as { text: string; blip_caption?: string }[]).map((t) =>
              t.blip_caption ? `${t.text} [shares an image: ${t.blip_caption}]` : t.text,
            ),
          ),
      ),
    );
    for (const turn of turns) assert.ok(turnTexts.has(turn.text), turn.turnId);
  });

  it('uses the tenant given as option', async () => {
    const first = (await collect(locomoPath, 'locomo', { tenantId: 'bench' })).find((item) => item.result.ok);
    assert.equal(first?.result.ok && first.result.event.tenantId, 'bench');
  });
});

describe('LoCoMo loader: bad structure', () => {
  const goodSample = (id: string) => ({
    sample_id: id,
    conversation: {
      speaker_a: 'A',
      speaker_b: 'B',
      session_1_date_time: '1:56 pm on 8 May, 2023',
      session_1: [
        { speaker: 'A', dia_id: 'D1:1', text: 'hello' },
        { speaker: 'B', dia_id: 'D1:2', text: 'hi', blip_caption: 'a cat' },
      ],
      session_2_date_time: 'someday',
      session_2: [{ speaker: 'A', dia_id: 'D2:1', text: 'lost' }],
      session_10_date_time: '2:00 pm on 9 May, 2023',
      session_10: [
        { speaker: 'A', text: 'no id' },
        { speaker: 'B', dia_id: 'D10:2', text: 'fine' },
        { speaker: 'B', dia_id: 'bad id!', text: 'bad' },
      ],
      session_3_date_time: '2:00 pm on 8 May, 2023',
      session_3: [{ speaker: 'A', dia_id: 'D3:1', text: 'third' }],
      session_4_date_time: '3:00 pm on 8 May, 2023',
      session_11_date_time: '3:00 pm on 10 May, 2023',
      session_11: 'not turns',
    },
    qa: [{ question: 'q', answer: 'a', evidence: ['D1:1'], category: 4 }],
    observation: { session_1_observation: 'never fed' },
  });

  it('reports each problem with its path and keeps going', async () => {
    const path = tempFile(
      'locomo-bad.json',
      JSON.stringify([
        goodSample('s-0'),
        'not a sample',
        { sample_id: 's-2' },
        { conversation: {} },
        goodSample('s-4'),
      ]),
    );
    const items = await collect(path, 'locomo');
    const problems = errors(items);
    const fields = problems.map((p) => p.field);
    assert.deepEqual(fields, [
      '[0].conversation.session_2_date_time',
      '[0].conversation.session_10[0].dia_id',
      '[0].conversation.session_10[2].dia_id',
      '[0].conversation.session_11',
      '[1]',
      '[2].conversation',
      '[3].sample_id',
      '[4].conversation.session_2_date_time',
      '[4].conversation.session_10[0].dia_id',
      '[4].conversation.session_10[2].dia_id',
      '[4].conversation.session_11',
    ]);
    for (const p of problems) assert.ok(p.message.includes(p.field), p.message);
    assert.match(problems[0]?.message ?? '', /"someday"/);
    const fed = events(items);
    assert.deepEqual(
      fed.filter((t) => t.userId === 's-0').map((t) => [t.sessionId, t.turnId, t.seq, t.text]),
      [
        ['session_1', 'D1:1', 0, 'hello'],
        ['session_1', 'D1:2', 1, 'hi [shares an image: a cat]'],
        ['session_3', 'D3:1', 3, 'third'],
        ['session_10', 'D10:2', 5, 'fine'],
      ],
    );
    assert.equal(fed.filter((t) => t.userId === 's-4').length, 4);
    assert.ok(!fed.some((t) => t.text.includes('never fed')));
  });

  it('a malformed sample is one error; a truncated file says so', async () => {
    const text = `[${JSON.stringify(goodSample('s-0'))}, {"sample_id": oops}, ${JSON.stringify(goodSample('s-2'))}]`;
    const items = await collect(tempFile('locomo-malformed.json', text), 'locomo');
    assert.deepEqual(
      errors(items)
        .filter((p) => p.field === '[1]')
        .map((p) => p.message.includes('malformed JSON')),
      [true],
    );
    assert.equal(new Set(events(items).map((t) => t.userId)).size, 2);

    const truncated = await collect(tempFile('locomo-truncated.json', text.slice(0, 200)), 'locomo');
    assert.deepEqual(
      errors(truncated).map((p) => p.field),
      ['(file)'],
    );
    assert.match(errors(truncated)[0]?.message ?? '', /truncated/);
    const notArray = await collect(tempFile('locomo-object.json', '{"sample_id": "x"}'), 'locomo');
    assert.match(errors(notArray)[0]?.message ?? '', /expected a JSON array/);
  });
});

describe('readJsonArray', () => {
  it('splits elements of any kind, with strings holding brackets, quotes and escapes', async () => {
    const values = [{ a: '[{"}],\\' }, [1, [2, { b: 'x' }]], 'str,]}', 3, null, true, { ü: 'é😀' }];
    const chunks: unknown[] = [];
    for await (const element of readJsonArray(
      tempFile('array.json', `\uFEFF  ${JSON.stringify(values, null, 2)}\n`),
    )) {
      assert.ok(element.ok, element.ok ? '' : element.message);
      chunks.push(element.value);
    }
    assert.deepEqual(chunks, values);
    const empty: unknown[] = [];
    for await (const element of readJsonArray(tempFile('empty.json', '[ ]'))) empty.push(element);
    assert.deepEqual(empty, []);
  });
});

describe('LongMemEval loader (shared oracle file)', () => {
  let items: InputItem[];
  let turns: TurnInput[];
  before(async () => {
    items = await collect(oraclePath, 'longmemeval');
    turns = events(items);
  });

  it('loads 206 users and all 4475 turns without errors', () => {
    assert.deepEqual(errors(items), []);
    assert.equal(new Set(turns.map((t) => t.userId)).size, 206);
    assert.equal(turns.length, 4475);
    for (const turn of turns) {
      assert.equal(turn.conversationId, turn.userId);
      assert.equal(turn.speaker, turn.role);
      assert.ok(turn.role === 'user' || turn.role === 'assistant');
    }
  });

  it('turn ids are <session_id>:<j>, dates parsed plus j seconds', () => {
    // 001be529: one haystack session answer_530960c1 dated "2023/05/21 (Sun) 19:50"
    const question = turns.filter((t) => t.userId === '001be529');
    assert.ok(question.length > 2);
    question.forEach((turn, j) => {
      assert.equal(turn.sessionId, 'answer_530960c1');
      assert.equal(turn.turnId, `answer_530960c1:${j}`);
      assert.equal(turn.seq, j);
      assert.equal(turn.occurredAt, Date.UTC(2023, 4, 21, 19, 50, j));
    });
    for (const turn of turns) assert.match(turn.turnId, new RegExp(`^${turn.sessionId}:\\d+$`));
  });

  it('never leaks has_answer', () => {
    for (const item of items) {
      assert.ok(!item.raw.includes('has_answer'), item.label);
      if (item.result.ok) assert.deepEqual(item.result.event.metadata, {});
    }
  });
});

describe('LongMemEval loader (shared S file, gzip)', () => {
  it('streams the first question and releases the file on an early break', async () => {
    const first: TurnInput[] = [];
    for await (const item of loadDataset(longMemEvalSPath, 'longmemeval', {})) {
      assert.ok(item.result.ok, item.label);
      if (first.length > 0 && item.result.event.userId !== first[0]?.userId) break;
      first.push(item.result.event);
    }
    assert.equal(first[0]?.userId, '001be529');
    assert.equal(first.length, 514);
    // LongMemEval-S repeats a filler session in this question: its second occurrence gets #2
    assert.equal(new Set(first.map((t) => t.turnId)).size, first.length);
    const repeated = first.filter((t) => t.sessionId === 'sharegpt_SYbLHTK_0#2');
    assert.equal(repeated.length, 6);
    assert.equal(repeated[0]?.turnId, 'sharegpt_SYbLHTK_0#2:0');
    assert.equal(longMemEvalSourceId(repeated[0]?.turnId ?? ''), 'sharegpt_SYbLHTK_0:0');
    assert.equal(first[0]?.occurredAt, Date.UTC(2023, 4, 20, 7, 47));
    assert.ok(await fileHandlesReleased(), `still open: ${process.getActiveResourcesInfo().join(', ')}`);
  });
});

describe('LongMemEval loader: bad structure', () => {
  const question = (id: string, extra: Record<string, unknown> = {}) => ({
    question_id: id,
    question: 'q?',
    answer: 'gold',
    answer_session_ids: ['s1'],
    haystack_dates: ['2023/05/20 (Sat) 02:21', 'not a date', '2023/05/22 (Mon) 10:00'],
    haystack_session_ids: ['s1', 's2', 's3'],
    haystack_sessions: [
      [
        { role: 'user', content: 'I adopted a cat', has_answer: true },
        { role: 'robot', content: 'nice', has_answer: false },
      ],
      [{ role: 'user', content: 'lost' }],
      [{ role: 'assistant' }, { role: 'user', content: 'ok' }],
    ],
    ...extra,
  });

  it('reports each problem with its path, keeps going, and keeps gold labels out of dead letters', async () => {
    const path = tempFile(
      'lme-bad.json.gz',
      gzipSync(
        JSON.stringify([
          question('q0'),
          question('q1', { haystack_dates: ['2023/05/20 (Sat) 02:21'] }),
          question('q2', { haystack_sessions: undefined }),
          question('q3'),
        ]),
      ),
    );
    const items = await collect(path, 'longmemeval', { tenantId: 'eval' });
    assert.deepEqual(
      errors(items).map((p) => p.field),
      [
        '[0].haystack_sessions[0][1].role',
        '[0].haystack_dates[1]',
        '[0].haystack_sessions[2][0].content',
        '[1].haystack_dates',
        '[2].haystack_sessions',
        '[3].haystack_sessions[0][1].role',
        '[3].haystack_dates[1]',
        '[3].haystack_sessions[2][0].content',
      ],
    );
    for (const item of items) {
      assert.ok(!item.raw.includes('has_answer'), item.raw);
      assert.ok(!item.raw.includes('gold'), item.raw);
    }
    assert.deepEqual(
      events(items).map((t) => [t.tenantId, t.userId, t.turnId, t.seq]),
      [
        ['eval', 'q0', 's1:0', 0],
        ['eval', 'q0', 's3:1', 4],
        ['eval', 'q3', 's1:0', 0],
        ['eval', 'q3', 's3:1', 4],
      ],
    );
  });
});

describe('jsonl loader', () => {
  const line = (fields: Record<string, unknown>) =>
    JSON.stringify({
      tenantId: 'acme',
      userId: 'u1',
      conversationId: 'c1',
      role: 'user',
      text: 'hello',
      occurredAt: '2024-05-08T13:56:00+02:00',
      ...fields,
    });

  it('decodes good lines and reports bad ones with their line and field', async () => {
    const lines = [
      line({ turnId: 'a' }), // 1: seq 0 (position)
      '', // 2: blank, skipped
      '{"tenantId": "acme", "userId": ', // 3: malformed JSON
      line({ turnId: 'b', tenantId: undefined }), // 4: no tenant, no default
      line({ turnId: 'c', occurredAt: 'last tuesday' }), // 5
      line({ turnId: 'd', role: 'wizard' }), // 6
      line({ turnId: 'e', text: 'x'.repeat(2 * 1024 * 1024) }), // 7
      line({ turnId: 'f', role: 'Assistant' }), // 8: seq 1
      line({ turnId: 'g', conversationId: 'c2', occurredAt: 1715176560000 }), // 9: seq 0 in c2
      '   ', // 10: blank
      line({ seq: 10 }), // 11: turnId t10
      line({ turnId: 'h' }), // 12: seq 11, after the explicit 10
    ];
    const path = tempFile('events.jsonl', `${lines.join('\r\n')}\n`);
    const items = await collect(path, 'jsonl');
    assert.deepEqual(
      errors(items).map((p) => [p.line, p.field]),
      [
        [3, '(line)'],
        [4, 'tenantId'],
        [5, 'occurredAt'],
        [6, 'role'],
        [7, 'text'],
      ],
    );
    const problems = errors(items);
    assert.match(problems[0]?.message ?? '', /line 3 is malformed JSON/);
    assert.match(problems[2]?.message ?? '', /"last tuesday"/);
    assert.match(problems[3]?.message ?? '', /user, assistant.*"wizard"/);
    assert.match(problems[4]?.message ?? '', /1 MiB/);
    const big = items.find((item) => item.line === 7);
    assert.ok(big && Buffer.byteLength(big.raw) <= 64 * 1024);
    assert.equal(items.find((item) => item.line === 3)?.raw, '{"tenantId": "acme", "userId": ');
    assert.deepEqual(
      items.filter((item) => item.result.ok).map((item) => item.line),
      [1, 8, 9, 11, 12],
    );
    assert.deepEqual(
      events(items).map((t) => [t.conversationId, t.turnId, t.seq, t.role, t.zoneOffset]),
      [
        ['c1', 'a', 0, 'user', '+02:00'],
        ['c1', 'f', 1, 'assistant', '+02:00'],
        ['c2', 'g', 0, 'user', '+00:00'],
        ['c1', 't10', 10, 'user', '+02:00'],
        ['c1', 'h', 11, 'user', '+02:00'],
      ],
    );
    assert.equal(items[0]?.label, 'line 1');
  });

  it('uses the default tenant, reads gzip, and releases the file on an early break', async () => {
    const text = [
      line({ turnId: 'a', tenantId: undefined }),
      line({ turnId: 'b', tenantId: undefined }),
    ].join('\n');
    const path = tempFile('events.jsonl.gz', gzipSync(text));
    const all = events(await collect(path, 'jsonl', { tenantId: 'tenant-x' }));
    assert.deepEqual(
      all.map((t) => [t.tenantId, t.turnId, t.seq]),
      [
        ['tenant-x', 'a', 0],
        ['tenant-x', 'b', 1],
      ],
    );
    for await (const item of loadDataset(path, 'jsonl', {})) {
      assert.equal(item.line, 1);
      break;
    }
    assert.ok(await fileHandlesReleased());
  });
});

describe('loadDataset', () => {
  it('rejects a corrupt gzip file as a whole, naming the path', async () => {
    const gz = gzipSync(JSON.stringify([{ sample_id: 'a', conversation: {} }]));
    const path = tempFile(
      'corrupt.json.gz',
      Buffer.concat([gz.subarray(0, gz.length - 12), Buffer.from('garbage')]),
    );
    for (const format of ['locomo', 'jsonl'] as const) {
      await assert.rejects(collect(path, format), (error: unknown) => {
        return (
          error instanceof InvalidInputError &&
          error.field === 'path' &&
          error.message.includes('corrupt.json.gz')
        );
      });
    }
  });

  it('rejects an unknown format and a missing file with the field to fix', async () => {
    assert.throws(
      () => loadDataset(locomoPath, 'csv' as DatasetFormat, {}),
      (error: unknown) => {
        return error instanceof InvalidInputError && error.field === 'format';
      },
    );
    await assert.rejects(collect(join(dir, 'nope.json'), 'locomo'), (error: unknown) => {
      return (
        error instanceof InvalidInputError && error.field === 'path' && error.message.includes('nope.json')
      );
    });
  });
});
