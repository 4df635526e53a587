import type { LightmemConfig } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { errorFields } from '../core/errors.js';
import { enableTracingApi } from './trace-context.js';

export interface Tracing {
  /** Sends the spans still buffered and stops. */
  shutdown(): Promise<void>;
}

/**
 * Turns tracing on in this process (or worker thread) when `telemetry.tracesEndpoint` is set: a tracer
 * provider whose spans are batched to that OTLP/HTTP endpoint, as service `lightmem-<role>`, sampled at
 * `telemetry.traceSampleRatio` for new traces (a caller's own decision is kept), with the W3C propagator
 * for incoming `traceparent` headers. Off (null) by default: the OpenTelemetry API then records nothing
 * and the SDK is not even loaded.
 */
export async function startTracing(
  config: LightmemConfig,
  role: string,
  logger: Logger,
): Promise<Tracing | null> {
  const endpoint = config.telemetry.tracesEndpoint;
  if (endpoint === null) return null;
  const [
    { NodeTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler },
    otlp,
    resources,
  ] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  const provider = new NodeTracerProvider({
    resource: resources.resourceFromAttributes({
      'service.name': `lightmem-${role}`,
      'service.namespace': 'lightmem',
      ...(config.mode === 'distributed' ? { 'service.instance.id': config.kafka.instanceId } : {}),
    }),
    sampler: new ParentBasedSampler({
      root: new TraceIdRatioBasedSampler(config.telemetry.traceSampleRatio),
    }),
    spanProcessors: [new BatchSpanProcessor(new otlp.OTLPTraceExporter({ url: endpoint }))],
  });
  // No async context manager (AsyncLocalStorage would slow every promise of the process) and no global
  // propagator: the trace context is passed explicitly (trace-context.ts).
  provider.register({ contextManager: null, propagator: null });
  await enableTracingApi();
  logger.info('tracing on', {
    endpoint,
    service: `lightmem-${role}`,
    sampleRatio: config.telemetry.traceSampleRatio,
  });
  return {
    shutdown: async () => {
      try {
        await provider.shutdown();
      } catch (error) {
        logger.warn('sending the last spans failed', errorFields(error));
      }
    },
  };
}
