import type { Attributes, AttributeValue, Context, SpanKind } from '@opentelemetry/api';

/**
 * Trace context as the event log carries it, and the spans of the code, through the OpenTelemetry API.
 * A record's `traceContext` is its W3C `traceparent` (`00-<trace id>-<span id>-<flags>`): a column of the
 * SQLite log, a header of a Kafka record. The stage that reads a record starts its span as a child of it
 * and gives its own outputs the context of that span, so one trace runs from the request through every
 * stage to the store.
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
  setAttribute(key: string, value: AttributeValue): void;
  setAttributes(attributes: Attributes): void;
}

const noSpan: SpanHandle = { setAttribute: () => undefined, setAttributes: () => undefined };

export type SpanKindName = 'server' | 'client' | 'consumer' | 'internal';

export interface SpanOptions {
  readonly kind?: SpanKindName;
  readonly attributes?: Attributes;
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

function traceparentOf(api: OtelApi, active: Context): string | undefined {
  const span = api.trace.getSpanContext(active);
  if (span === undefined || !api.isSpanContextValid(span)) return undefined;
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The `traceparent` of the active span (undefined when there is none, or tracing is off). */
export function currentTraceContext(): string | undefined {
  return otel === null ? undefined : traceparentOf(otel, otel.context.active());
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

async function runIn<R>(
  api: OtelApi,
  name: string,
  options: SpanOptions,
  parent: Context,
  work: (span: SpanHandle) => Promise<R>,
): Promise<R> {
  return api.trace
    .getTracer('lightmem-stream')
    .startActiveSpan(
      name,
      { kind: kindOf(api, options.kind), attributes: options.attributes ?? {} },
      parent,
      async (span) => {
        try {
          return await work(span);
        } catch (error) {
          span.setStatus({ code: api.SpanStatusCode.ERROR });
          span.setAttribute('error.type', errorType(error));
          throw error;
        } finally {
          span.end();
        }
      },
    );
}

/**
 * Runs `work` in a new active span, a child of the active one; it ends when the work settles, with the
 * error's code (not its text) when it fails.
 */
export function inSpan<R>(
  name: string,
  options: SpanOptions,
  work: (span: SpanHandle) => Promise<R>,
): Promise<R> {
  const api = otel;
  if (api === null) return work(noSpan);
  return runIn(api, name, options, api.context.active(), work);
}

/** A server span for an incoming request, a child of the caller's `traceparent` header when it sends one. */
export function inServerSpan<R>(
  name: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  attributes: Attributes,
  work: (span: SpanHandle) => Promise<R>,
): Promise<R> {
  const api = otel;
  if (api === null) return work(noSpan);
  const header = headers['traceparent'];
  const parent = contextOfTrace(api, typeof header === 'string' ? header.trim().toLowerCase() : undefined);
  return runIn(api, name, { kind: 'server', attributes }, parent, work);
}

/** The records of a stage batch, as far as tracing is concerned. */
interface TracedRecord {
  readonly key: string;
  readonly topic: string;
  readonly traceContext?: string | undefined;
}

/**
 * Runs a stage batch in one span per trace its records belong to (`stage <group>`, a child of the context
 * each record carries: the request that appended a turn, or the stage that wrote it), with the first as the
 * active span (LLM calls and store writes of the batch are its children). `run`'s outputs get the context of
 * the span of the input with the same key (else the first), so the next stage continues the trace.
 */
export async function inStageSpans<T extends { readonly records: readonly { readonly key: string }[] }>(
  records: readonly TracedRecord[],
  group: string,
  run: () => Promise<T | null>,
): Promise<{ output: T; traceContextOf: (key: string) => string | undefined } | null> {
  const api = otel;
  const untraced = async () => {
    const output = await run();
    return output === null ? null : { output, traceContextOf: () => undefined };
  };
  if (api === null) return untraced();
  const byTrace = new Map<string | undefined, TracedRecord[]>();
  for (const record of records) {
    const same = byTrace.get(record.traceContext);
    if (same === undefined) byTrace.set(record.traceContext, [record]);
    else same.push(record);
  }
  const tracer = api.trace.getTracer('lightmem-stream');
  const spans = [...byTrace].map(([traceContext, members]) => ({
    members,
    span: tracer.startSpan(
      `stage ${group}`,
      {
        kind: api.SpanKind.CONSUMER,
        attributes: {
          'lightmem.stage': group,
          'messaging.destination.name': members[0]?.topic ?? '',
          'messaging.batch.message_count': members.length,
        },
      },
      contextOfTrace(api, traceContext),
    ),
  }));
  const [first] = spans;
  if (first === undefined) return untraced();
  try {
    const output = await api.context.with(api.trace.setSpan(api.context.active(), first.span), run);
    if (output === null) return null;
    const contextOfKey = new Map<string, string | undefined>();
    for (const { members, span } of spans.slice().reverse()) {
      const traceContext = traceparentOf(api, api.trace.setSpan(api.ROOT_CONTEXT, span));
      for (const record of members) contextOfKey.set(record.key, traceContext);
    }
    const firstContext = traceparentOf(api, api.trace.setSpan(api.ROOT_CONTEXT, first.span));
    for (const { span } of spans) span.setAttribute('lightmem.outputs', output.records.length);
    return { output, traceContextOf: (key) => contextOfKey.get(key) ?? firstContext };
  } catch (error) {
    for (const { span } of spans) {
      span.setStatus({ code: api.SpanStatusCode.ERROR });
      span.setAttribute('error.type', errorType(error));
    }
    throw error;
  } finally {
    for (const { span } of spans) span.end();
  }
}

/** The span of a memory store write (`memory store upsert`): which store and how many memories. */
export function storeWriteSpan(system: 'sqlite' | 'elasticsearch', memories: number): SpanOptions {
  return {
    kind: 'client',
    attributes: { 'db.system.name': system, 'db.operation.name': 'upsert', 'lightmem.memories': memories },
  };
}

function errorType(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return error instanceof Error ? error.name : 'unknown';
}
