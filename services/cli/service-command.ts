import { InvalidInputError } from '../core/errors.js';
import { systemClock } from '../core/ports/clock.js';
import { DistributedRuntime, stageNames } from '../runtime/distributed-runtime.js';
import type { StageName } from '../runtime/pipeline.js';
import { commonOptions, parse } from './args.js';
import { commandConfig, commandLogger } from './context.js';

export const serviceUsage = `lightmem service compressor|segmenter|summarizer|indexer [--config F]
  Runs one pipeline stage of distributed mode (Kafka + schema registry + Elasticsearch) until SIGTERM or
  SIGINT: the batch in hand is finished and committed, then the consumer leaves its group. Run as many
  replicas of a stage as it has partitions; give each a stable LIGHTMEM_INSTANCE_ID.`;

export async function serviceCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, commonOptions);
  if (values['help'] === true) {
    console.log(serviceUsage);
    return 0;
  }
  const stage = positionals[0];
  if (stage === undefined || !stageNames.includes(stage as StageName)) {
    throw new InvalidInputError(
      `the stage must be one of ${stageNames.join(', ')}\n${serviceUsage}`,
      'stage',
    );
  }
  const config = commandConfig(values, { mode: 'distributed' });
  const logger = commandLogger(values, config, { logLevel: 'info' }).child({ stage });
  const runtime = await DistributedRuntime.open(config, { logger, clock: systemClock });
  const stop = new AbortController();
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
    await runtime.close();
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
