import type { ServerSpec } from '../lib/server-spec.js';
import { kafkaServer } from './kafka.js';
import { registryServer } from './registry.js';
import { elasticsearchServer } from './elasticsearch.js';
import { temporalServer } from './temporal.js';
import { llmServer } from './llm.js';

/** Every server of distributed mode, in start order. */
export function allServers(): ServerSpec[] {
  return [kafkaServer, registryServer, elasticsearchServer, temporalServer, llmServer];
}
