import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { DistributedRuntime, stageNames } from '../runtime/distributed-runtime.js';
import type { StageName } from '../runtime/pipeline.js';
import { commonOptions, parse } from './args.js';
import { commandConfig, commandLogger } from './context.js';
import type { LightmemConfig } from '../core/config.js';
import type { Logger } from '../core/ports/logger.js';
import { startOpsServer, type OpsServer } from '../telemetry/ops-server.js';
import { startTracing } from '../telemetry/tracing-setup.js';
import type { MetricsSources } from '../telemetry/metrics.js';

/** The service's /metrics, /livez, /readyz (telemetry.opsHost / opsPort): ready while `working()`. */
function opsEndpoints(
  config: LightmemConfig,
  logger: Logger,
  working: () => boolean,
  sources: MetricsSources = {},
): Promise<OpsServer> {
  return startOpsServer({
    ...sources,
    host: config.telemetry.opsHost,
    port: config.telemetry.opsPort,
    logger,
    readiness: async () =>
      working()
        ? { ready: true, reasons: [] }
        : { ready: false, reasons: ['not running (starting or stopping)'] },
  });
}

export const serviceUsage = `lightmem service compressor|segmenter|summarizer|indexer|applier|consolidator [--config F]
  Runs one pipeline stage of distributed mode (Kafka + schema registry + Elasticsearch) until SIGTERM or
  SIGINT: the batch in hand is finished and committed, then the consumer leaves its group. Run as many
  replicas of a stage as it has partitions; give each a stable LIGHTMEM_INSTANCE_ID. \`consolidator\` runs a
  Temporal worker of sleep-time consolidation (temporal.address, temporal.taskQueue): run one or more.
  Each answers GET /metrics (Prometheus), /livez and /readyz on telemetry.opsHost:opsPort (127.0.0.1:9464;
  LIGHTMEM_OPS_HOST, LIGHTMEM_OPS_PORT; port 0: any free one, logged).`;

export async function serviceCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, commonOptions);
  if (values['help'] === true) {
    console.log(serviceUsage);
    return 0;
  }
  const stage = positionals[0];
  if (stage === 'consolidator') return consolidatorService(values);
  if (stage === undefined || !stageNames.includes(stage as StageName)) {
    throw new InvalidInputError(
      `the stage must be one of ${stageNames.join(', ')}, consolidator\n${serviceUsage}`,
      'stage',
    );
  }
  const config = commandConfig(values, { mode: 'distributed' });
  const logger = commandLogger(values, config, { logLevel: 'info' }).child({ stage });
  const tracing = await startTracing(config, stage, logger);
  const runtime = await DistributedRuntime.open(config, { logger, clock: systemClock });
  const stop = new AbortController();
  let ops: OpsServer;
  try {
    ops = await opsEndpoints(config, logger, () => !stop.signal.aborted, {
      // This stage's lag only (its group's committed offsets against its input's end).
      lag: async () => (await runtime.lag()).filter((lag) => lag.stage === stage),
    });
  } catch (error) {
    await runtime.close();
    throw error;
  }
  const graceMs = config.pipeline.shutdownGraceMs;
  let grace: NodeJS.Timeout | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info('stopping', { signal });
    stop.abort();
    grace = setTimeout(() => {
      logger.error('the graceful stop took too long; exiting without it', { graceMs });
      process.exit(1);
    }, graceMs).unref();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  logger.info('stage service running', {
    instance: config.kafka.instanceId,
    brokers: config.kafka.brokers.join(','),
    ...(stage === 'summarizer' ? { extractor: runtime.components.extractor.version } : {}),
  });
  try {
    await runtime.runStage(stage as StageName, stop.signal);
  } finally {
    stop.abort();
    await ops.close();
    await runtime.close();
    await tracing?.shutdown();
    clearTimeout(grace);
    // Everything is closed and committed. A handle still open now is a client library's leftover (a retry
    // timer, a socket): name it, and do not let it keep the process (and its replacement's start) waiting.
    setTimeout(() => {
      logger.warn('handles still open after the stop; exiting anyway', {
        resources: process.getActiveResourcesInfo().join(', '),
      });
      process.exit(process.exitCode ?? 0);
    }, 5_000).unref();
  }
  logger.info('stopped');
  return 0;
}

/** `lightmem service consolidator`: a Temporal worker of sleep-time consolidation until SIGTERM / SIGINT. */
async function consolidatorService(values: Record<string, string | boolean | undefined>): Promise<number> {
  const config = commandConfig(values, { mode: 'distributed' });
  const logger = commandLogger(values, config, { logLevel: 'info' }).child({ service: 'consolidator' });
  const tracing = await startTracing(config, 'consolidator', logger);
  const runtime = await DistributedRuntime.open(config, { logger, clock: systemClock });
  const stop = new AbortController();
  let ops: OpsServer;
  try {
    ops = await opsEndpoints(config, logger, () => !stop.signal.aborted);
  } catch (error) {
    await runtime.close();
    throw error;
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info('stopping', { signal });
    stop.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  logger.info('consolidator running', {
    temporal: config.temporal.address,
    taskQueue: config.temporal.taskQueue,
    policy: config.consolidation.policy,
  });
  try {
    await runtime.runConsolidator(stop.signal, process.env);
    return 0;
  } finally {
    stop.abort();
    await ops.close();
    await runtime.close();
    await tracing?.shutdown();
  }
}
