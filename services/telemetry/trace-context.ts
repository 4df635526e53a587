import type { Attributes, AttributeValue, Context, Span, SpanKind } from '@opentelemetry/api';

/**
 * Trace context as the event log carries it, and the spans of the code, through the OpenTelemetry API.
 * A record's `traceContext` is its W3C `traceparent` (`00-<trace id>-<span id>-<flags>`): a column of the
 * SQLite log, a header of a Kafka record. The stage that reads a record starts its span as a child of it
 * and gives its own outputs the context of that span, so one trace runs from the request through every
 * stage to the store.
 *
 * The context is passed explicitly (in the records a stage handler gets, an extraction's options, a chat
 * request, a store write's options), never through an async context manager: AsyncLocalStorage would slow
 * every promise of the process once tracing is on.
 *
 * The API is loaded only when tracing is on (`enableTracingApi`, called by tracing-setup.ts once a tracer
 * provider is registered); until then every function here is a no-op and costs a command nothing at start.
 * Span attributes carry ids and counts, never turn text or secrets.
 */

type OtelApi = typeof import('@opentelemetry/api');

let otel: OtelApi | null = null;

/** Loads the OpenTelemetry API for this thread: spans are recorded by the provider registered with it. */
export async function enableTracingApi(): Promise<void> {
  otel ??= await import('@opentelemetry/api');
}

/** What code may do with the span it runs in. */
export interface SpanHandle {
  /** The span's own traceparent, to hand to the work it does (undefined when tracing is off). */
  readonly traceparent: string | undefined;
  setAttribute(key: string, value: AttributeValue): void;
  setAttributes(attributes: Attributes): void;
}

const noSpan: SpanHandle = {
  traceparent: undefined,
  setAttribute: () => undefined,
  setAttributes: () => undefined,
};

export type SpanKindName = 'server' | 'client' | 'consumer' | 'internal';

export interface SpanOptions {
  readonly kind?: SpanKindName;
  readonly attributes?: Attributes;
  /** The traceparent of the parent span; none: the root of a new trace. */
  readonly parent?: string | undefined;
}

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function kindOf(api: OtelApi, kind: SpanKindName | undefined): SpanKind {
  switch (kind) {
    case 'server':
      return api.SpanKind.SERVER;
    case 'client':
      return api.SpanKind.CLIENT;
    case 'consumer':
      return api.SpanKind.CONSUMER;
    default:
      return api.SpanKind.INTERNAL;
  }
}

/** The traceparent of a span (undefined when it is not recorded: sampled out). */
function traceparentOf(api: OtelApi, span: Span): string | undefined {
  const context = span.spanContext();
  if (!api.isSpanContextValid(context)) return undefined;
  return `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The context a `traceparent` names: a span started under it is its child (the root without one). */
function contextOfTrace(api: OtelApi, traceparent: string | undefined): Context {
  const match = traceparent === undefined ? null : traceparentPattern.exec(traceparent);
  if (match === null) return api.ROOT_CONTEXT;
  return api.trace.setSpanContext(api.ROOT_CONTEXT, {
    traceId: match[1] ?? '',
    spanId: match[2] ?? '',
    traceFlags: Number.parseInt(match[3] ?? '0', 16),
    isRemote: true,
  });
}

function startSpan(api: OtelApi, name: string, options: SpanOptions): Span {
  return api.trace
    .getTracer('lightmem-stream')
    .startSpan(
      name,
      { kind: kindOf(api, options.kind), attributes: options.attributes ?? {} },
      contextOfTrace(api, options.parent),
    );
}

function failed(api: OtelApi, span: Span, error: unknown): void {
  span.setStatus({ code: api.SpanStatusCode.ERROR });
  span.setAttribute('error.type', errorType(error));
}

/**
 * Runs `work` in a new span, a child of `options.parent` (else the root of a new trace); it ends when the
 * work settles, with the error's code (not its text) when it fails. `work` gets the span's traceparent to
 * hand on.
 */
export async function inSpan<R>(
  name: string,
  options: SpanOptions,
  work: (span: SpanHandle) => Promise<R>,
): Promise<R> {
  const api = otel;
  if (api === null) return work(noSpan);
  const span = startSpan(api, name, options);
  const handle: SpanHandle = {
    traceparent: traceparentOf(api, span),
    setAttribute: (key, value) => span.setAttribute(key, value),
    setAttributes: (attributes) => span.setAttributes(attributes),
  };
  try {
    return await work(handle);
  } catch (error) {
    failed(api, span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** A server span for an incoming request, a child of the caller's `traceparent` header when it sends one. */
export function inServerSpan<R>(
  name: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  attributes: Attributes,
  work: (span: SpanHandle) => Promise<R>,
): Promise<R> {
  const header = headers['traceparent'];
  const parent = typeof header === 'string' ? header.trim().toLowerCase() : undefined;
  return inSpan(name, { kind: 'server', attributes, parent }, work);
}

/** The records of a stage batch, as far as tracing is concerned. */
interface TracedRecord {
  readonly key: string;
  readonly topic: string;
  readonly traceContext?: string | undefined;
}

/**
 * Runs a stage batch in one span per trace its records belong to (`stage <group>`, a child of the context
 * each record carries: the request that appended a turn, or the stage that wrote it). `run` gets the
 * records with the context of their span instead (what the handler hands to its LLM calls and store
 * writes), and its outputs get the context of the span of the input with the same key (else the first),
 * so the next stage continues the trace.
 */
export async function inStageSpans<R extends TracedRecord, T>(
  records: readonly R[],
  group: string,
  run: (records: readonly R[]) => Promise<T | null>,
): Promise<{ output: T; traceContextOf: (key: string) => string | undefined } | null> {
  const api = otel;
  if (api === null || records.length === 0) {
    const output = await run(records);
    return output === null ? null : { output, traceContextOf: () => undefined };
  }
  const byTrace = new Map<string | undefined, R[]>();
  for (const record of records) {
    const same = byTrace.get(record.traceContext);
    if (same === undefined) byTrace.set(record.traceContext, [record]);
    else same.push(record);
  }
  const spans = [...byTrace].map(([traceContext, members]) => {
    const span = startSpan(api, `stage ${group}`, {
      kind: 'consumer',
      parent: traceContext,
      attributes: {
        'lightmem.stage': group,
        'messaging.destination.name': members[0]?.topic ?? '',
        'messaging.batch.message_count': members.length,
      },
    });
    return { members, span, traceparent: traceparentOf(api, span) };
  });
  const contextOf = new Map<R, string | undefined>();
  const contextOfKey = new Map<string, string | undefined>();
  for (const { members, traceparent } of spans.slice().reverse()) {
    for (const record of members) {
      contextOf.set(record, traceparent);
      contextOfKey.set(record.key, traceparent);
    }
  }
  const firstContext = spans[0]?.traceparent;
  try {
    const output = await run(records.map((record) => ({ ...record, traceContext: contextOf.get(record) })));
    if (output === null) return null;
    return { output, traceContextOf: (key) => contextOfKey.get(key) ?? firstContext };
  } catch (error) {
    for (const { span } of spans) failed(api, span, error);
    throw error;
  } finally {
    for (const { span } of spans) span.end();
  }
}

/** The span of a memory store write (`memory store upsert`): which store and how many memories. */
export function storeWriteSpan(
  system: 'sqlite' | 'elasticsearch',
  memories: number,
  parent: string | undefined,
): SpanOptions {
  return {
    kind: 'client',
    parent,
    attributes: { 'db.system.name': system, 'db.operation.name': 'upsert', 'lightmem.memories': memories },
  };
}

function errorType(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return error instanceof Error ? error.name : 'unknown';
}
