import type { EventLog, AppendRecord } from '../core/ports/event-log.js';
import type { Clock } from '../core/ports/clock.js';
import type { ConversationEvent, DeadLetter } from '../core/model/generated.js';
import { Topics, conversationKey } from '../core/model/topics.js';
import { shortHash } from '../core/model/ids.js';
import { compositeKey, eventDedupKey } from '../core/model/keys.js';
import { payloadExcerpt } from '../core/model/dead-letter.js';
import { flushEvent } from '../core/model/flush-event.js';
import { retrying } from '../core/backoff.js';
import type { InputItem, TurnInput } from '../ingest/index.js';

export interface IngestError {
  readonly line: number | null;
  readonly label: string;
  readonly field: string;
  readonly message: string;
}

export interface IngestReport {
  /** Turns (and flush events) newly appended to the log. */
  accepted: number;
  /** Items already in the log (same tenant, user, conversation and turn id): ignored. */
  duplicates: number;
  rejected: number;
  /**
   * Session ends appended: the input's own `session_end` events and the markers added because a session
   * changed or the input ended (`session-end:<session>@<last turn>`: the same input sent again adds none,
   * a session reopened with new turns is closed again).
   */
  sessionEnds: number;
  readonly errors: IngestError[];
}

export interface IngestOptions {
  /** Where the items came from, for dead letters (a file path or "http"). */
  readonly source: string;
  /** Close every session the input touched when the input ends (files: yes; API batches: on request). */
  readonly endSessions: boolean;
  /**
   * When the input ends, also append a `flush` for every conversation it touched, so buffers that span
   * sessions (`summarizer.flushAtSessionEnd: false`) are extracted too: the end of a file is the end of
   * what there is to remember (LightMem's force_extract).
   */
  readonly flushAtEnd?: boolean | undefined;
  readonly onProgress?: (report: IngestReport) => void;
  /** Keep at most this many errors in the report (all are dead-lettered). */
  readonly maxReportedErrors?: number;
  /**
   * Tries of each append while the log is busy (another process writing). 1 (the API): a busy log is the
   * caller's to retry (503 with Retry-After); a file ingest waits its turn.
   */
  readonly appendAttempts?: number;
  /** The trace of the request that ingests (a W3C traceparent): the appended records continue it. */
  readonly traceContext?: string | undefined;
}

const appendBatch = 500;

/**
 * Turns decoded input into log records: valid events are appended with an idempotency key (re-sending a
 * turn is a no-op), invalid ones are dead-lettered with the line and field, and a session-end marker is
 * appended whenever a conversation moves to a new session and, optionally, when the input ends.
 */
export class Ingestion {
  constructor(
    private readonly log: EventLog,
    private readonly clock: Clock,
  ) {}

  async ingest(
    items: AsyncIterable<InputItem> | Iterable<InputItem>,
    options: IngestOptions,
  ): Promise<IngestReport> {
    const report: IngestReport = { accepted: 0, duplicates: 0, rejected: 0, sessionEnds: 0, errors: [] };
    const open = new Map<string, ConversationEvent>();
    let events: AppendRecord<typeof Topics.raw>[] = [];
    let letters: AppendRecord<typeof Topics.deadLetters>[] = [];
    const append = <T extends typeof Topics.raw | typeof Topics.deadLetters>(
      topic: T,
      records: readonly AppendRecord<T>[],
    ) => {
      // The records continue the trace of the request that appends them (when tracing is on).
      const { traceContext } = options;
      const traced = traceContext === undefined ? records : records.map((r) => ({ ...r, traceContext }));
      return retrying(() => this.log.append(topic, traced), {
        attempts: options.appendAttempts ?? 1,
        baseMs: 200,
        maxMs: 5_000,
      });
    };
    const flush = async (): Promise<void> => {
      if (letters.length > 0) await append(Topics.deadLetters, letters);
      if (events.length > 0) {
        const result = await append(Topics.raw, events);
        const skipped = new Set(result.duplicateIndexes);
        for (const [index, event] of events.entries()) {
          if (skipped.has(index)) {
            if (event.value.kind !== 'session_end') report.duplicates++;
          } else if (event.value.kind === 'session_end') report.sessionEnds++;
          else report.accepted++;
        }
      }
      events = [];
      letters = [];
      options.onProgress?.(report);
    };
    for await (const item of items) {
      const now = this.clock.now();
      if (!item.result.ok) {
        report.rejected++;
        const { field, message } = item.result.error;
        if (report.errors.length < (options.maxReportedErrors ?? 1000)) {
          report.errors.push({ line: item.line, label: item.label, field, message });
        }
        letters.push(this.deadLetter(item, field, message, options.source, now));
      } else {
        const event = stamp(item.result.event, now);
        const conversation = conversationStateKeyOf(event);
        const previous = open.get(conversation);
        if (previous !== undefined && previous.sessionId !== event.sessionId && previous.kind === 'turn') {
          events.push(record(sessionEnd(previous, now)));
        }
        events.push(record(event));
        open.set(conversation, event);
      }
      if (events.length + letters.length >= appendBatch) await flush();
    }
    if (options.endSessions) {
      for (const last of open.values()) {
        if (last.kind !== 'turn') continue;
        events.push(record(sessionEnd(last, this.clock.now())));
      }
    }
    if (options.flushAtEnd === true) {
      for (const last of open.values()) {
        events.push(
          flushEvent(last, {
            turnId: `end-of-input@${last.turnId}`,
            seq: last.seq + 2,
            now: this.clock.now(),
            reason: 'end-of-input',
          }),
        );
      }
    }
    await flush();
    return report;
  }

  private deadLetter(
    item: InputItem,
    field: string,
    message: string,
    source: string,
    now: number,
  ): AppendRecord<typeof Topics.deadLetters> {
    const value: DeadLetter = {
      stage: 'ingest',
      sourceTopic: source,
      sourceOffset: null,
      sourceLine: item.line,
      key: item.label,
      errorCode: 'invalid_input',
      field,
      reason: message,
      attempt: 1,
      payload: payloadExcerpt(item.raw),
      failedAt: now,
    };
    // Re-ingesting the same bad input does not pile up the same dead letter.
    return {
      key: 'ingest',
      value,
      dedupKey: compositeKey(['ingest', source, item.label, shortHash(item.raw)]),
    };
  }
}

function stamp(input: TurnInput, now: number): ConversationEvent {
  return { ...input, receivedAt: now };
}

function record(event: ConversationEvent): AppendRecord<typeof Topics.raw> {
  return { key: conversationKey(event), value: event, dedupKey: eventDedupKey(event) };
}

function conversationStateKeyOf(event: ConversationEvent): string {
  return compositeKey([event.tenantId, event.userId, event.conversationId]);
}

function sessionEnd(last: ConversationEvent, now: number): ConversationEvent {
  return {
    ...last,
    kind: 'session_end',
    turnId: `session-end:${last.sessionId}@${last.turnId}`,
    role: 'system',
    speaker: 'lightmem',
    text: '',
    receivedAt: now,
    metadata: {},
  };
}
