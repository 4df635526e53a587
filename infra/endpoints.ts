/**
 * Where the servers started by `npm run infra:up` listen (loopback only). The integration tests and the
 * distributed-mode examples connect here. Ports are off the defaults so that servers a developer already
 * runs (Kafka on 9092, Elasticsearch on 9200…) are never touched; each can be moved with an env var.
 */
function port(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0 || parsed > 65_535)
    throw new Error(`${name} must be a port number, got ${value}`);
  return parsed;
}

export const infraPorts = {
  kafka: port('LIGHTMEM_INFRA_KAFKA_PORT', 19092),
  kafkaController: port('LIGHTMEM_INFRA_KAFKA_CONTROLLER_PORT', 19093),
  registry: port('LIGHTMEM_INFRA_REGISTRY_PORT', 18081),
  registryManagement: port('LIGHTMEM_INFRA_REGISTRY_MANAGEMENT_PORT', 18082),
  elasticsearch: port('LIGHTMEM_INFRA_ES_PORT', 19200),
  elasticsearchTransport: port('LIGHTMEM_INFRA_ES_TRANSPORT_PORT', 19300),
  temporal: port('LIGHTMEM_INFRA_TEMPORAL_PORT', 17233),
  temporalHttp: port('LIGHTMEM_INFRA_TEMPORAL_HTTP_PORT', 17243),
  temporalMetrics: port('LIGHTMEM_INFRA_TEMPORAL_METRICS_PORT', 17244),
  llm: port('LIGHTMEM_INFRA_LLM_PORT', 18090),
} as const;

export const infraEndpoints = {
  kafkaBrokers: [`127.0.0.1:${infraPorts.kafka}`],
  /** Apicurio's Confluent-compatible API. */
  registryUrl: `http://127.0.0.1:${infraPorts.registry}/apis/ccompat/v7`,
  elasticsearchUrl: `http://127.0.0.1:${infraPorts.elasticsearch}`,
  temporalAddress: `127.0.0.1:${infraPorts.temporal}`,
  /** The OpenAI-compatible API of the local chat server (llama-cpp-python), and the model it serves. */
  llmBaseUrl: `http://127.0.0.1:${infraPorts.llm}/v1`,
  llmModel: 'smollm2-135m-instruct',
} as const;
