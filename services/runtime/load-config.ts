import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LightmemConfig, type LightmemConfigInput } from '../core/config.js';
import { LightmemError } from '../core/errors.js';

export interface ConfigSources {
  /** process.env (only entry points pass it). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** --config path, if given. */
  readonly file?: string | undefined;
  /** Command-line overrides (e.g. --data-dir, --port). */
  readonly overrides?: LightmemConfigInput | undefined;
}

/**
 * Configuration precedence: defaults < config file (LIGHTMEM_CONFIG, --config, or <dataDir>/config.json)
 * < environment (LIGHTMEM_DATA_DIR, LIGHTMEM_PORT, LIGHTMEM_HOST, LIGHTMEM_OPS_PORT, LIGHTMEM_OPS_HOST, LIGHTMEM_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, LIGHTMEM_LOG_LEVEL, LIGHTMEM_MODELS_DIR,
 * LIGHTMEM_EMBEDDER, LIGHTMEM_COMPRESSOR, LIGHTMEM_AUTO_FETCH, LIGHTMEM_LLM_BASE_URL or OPENAI_BASE_URL,
 * LIGHTMEM_LLM_MODEL, LIGHTMEM_MODE, LIGHTMEM_KAFKA_BROKERS (comma-separated), LIGHTMEM_KAFKA_TOPIC_PREFIX,
 * LIGHTMEM_INSTANCE_ID, LIGHTMEM_REGISTRY_URL, LIGHTMEM_ES_URL, LIGHTMEM_ES_INDEX_PREFIX, LIGHTMEM_TEMPORAL_ADDRESS,
 * and the connection security of distributed mode, `securityFromEnv` below) < command-line flags. The LLM
 * API key is read from the environment where it is used.
 */
function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

export function loadConfig(sources: ConfigSources): LightmemConfig {
  const env = sources.env;
  const fromEnv: Record<string, unknown> = {};
  if (env['LIGHTMEM_DATA_DIR'] !== undefined) fromEnv['dataDir'] = env['LIGHTMEM_DATA_DIR'];
  if (env['LIGHTMEM_LOG_LEVEL'] !== undefined) fromEnv['logLevel'] = env['LIGHTMEM_LOG_LEVEL'];
  const server: Record<string, unknown> = {};
  if (env['LIGHTMEM_PORT'] !== undefined) server['port'] = Number(env['LIGHTMEM_PORT']);
  if (env['LIGHTMEM_HOST'] !== undefined) server['host'] = env['LIGHTMEM_HOST'];
  const telemetry: Record<string, unknown> = {};
  if (nonEmpty(env['LIGHTMEM_OPS_PORT']) !== undefined)
    telemetry['opsPort'] = Number(env['LIGHTMEM_OPS_PORT']);
  if (nonEmpty(env['LIGHTMEM_OPS_HOST']) !== undefined) telemetry['opsHost'] = env['LIGHTMEM_OPS_HOST'];
  const otlpBase = nonEmpty(env['OTEL_EXPORTER_OTLP_ENDPOINT']);
  const traces =
    nonEmpty(env['LIGHTMEM_TRACES_ENDPOINT']) ??
    nonEmpty(env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) ??
    (otlpBase === undefined ? undefined : `${otlpBase.replace(/\/+$/, '')}/v1/traces`);
  if (traces !== undefined) telemetry['tracesEndpoint'] = traces;
  if (Object.keys(telemetry).length > 0) fromEnv['telemetry'] = telemetry;
  // Requests per second per API key; the burst allowed is twice that.
  const rate = nonEmpty(env['LIGHTMEM_RATE_LIMIT']);
  if (rate !== undefined)
    server['rateLimit'] = { requestsPerSecond: Number(rate), burst: 2 * Math.ceil(Number(rate)) };
  const models: Record<string, unknown> = {};
  if (env['LIGHTMEM_MODELS_DIR'] !== undefined && env['LIGHTMEM_MODELS_DIR'] !== '')
    models['dir'] = env['LIGHTMEM_MODELS_DIR'];
  if (env['LIGHTMEM_EMBEDDER'] !== undefined) models['embedder'] = env['LIGHTMEM_EMBEDDER'];
  if (env['LIGHTMEM_COMPRESSOR'] !== undefined) models['compressor'] = env['LIGHTMEM_COMPRESSOR'];
  const llm: Record<string, unknown> = {};
  // Empty means unset; a malformed URL is refused where it is used (`--qa`), not by every command.
  const llmBase = nonEmpty(env['LIGHTMEM_LLM_BASE_URL']) ?? nonEmpty(env['OPENAI_BASE_URL']);
  if (llmBase !== undefined) llm['baseUrl'] = llmBase;
  const llmModel = nonEmpty(env['LIGHTMEM_LLM_MODEL']);
  if (llmModel !== undefined) llm['model'] = llmModel;
  if (Object.keys(llm).length > 0) fromEnv['llm'] = llm;
  if (env['LIGHTMEM_AUTO_FETCH'] !== undefined)
    models['autoFetch'] = !['0', 'false', 'no'].includes(env['LIGHTMEM_AUTO_FETCH']);
  if (Object.keys(models).length > 0) fromEnv['models'] = models;
  if (nonEmpty(env['LIGHTMEM_MODE']) !== undefined) fromEnv['mode'] = env['LIGHTMEM_MODE'];
  const security = securityFromEnv(env);
  const kafka: Record<string, unknown> = { ...security.kafka };
  const brokers = nonEmpty(env['LIGHTMEM_KAFKA_BROKERS']);
  if (brokers !== undefined) kafka['brokers'] = brokers.split(',').map((b) => b.trim());
  if (env['LIGHTMEM_KAFKA_TOPIC_PREFIX'] !== undefined)
    kafka['topicPrefix'] = env['LIGHTMEM_KAFKA_TOPIC_PREFIX'];
  if (nonEmpty(env['LIGHTMEM_INSTANCE_ID']) !== undefined) kafka['instanceId'] = env['LIGHTMEM_INSTANCE_ID'];
  if (Object.keys(kafka).length > 0) fromEnv['kafka'] = kafka;
  const registry: Record<string, unknown> = { ...security.registry };
  const registryUrl = nonEmpty(env['LIGHTMEM_REGISTRY_URL']);
  if (registryUrl !== undefined) registry['url'] = registryUrl;
  if (Object.keys(registry).length > 0) fromEnv['registry'] = registry;
  const elasticsearch: Record<string, unknown> = { ...security.elasticsearch };
  const esUrl = nonEmpty(env['LIGHTMEM_ES_URL']);
  if (esUrl !== undefined) elasticsearch['node'] = esUrl;
  if (nonEmpty(env['LIGHTMEM_ES_INDEX_PREFIX']) !== undefined)
    elasticsearch['indexPrefix'] = env['LIGHTMEM_ES_INDEX_PREFIX'];
  if (Object.keys(elasticsearch).length > 0) fromEnv['elasticsearch'] = elasticsearch;
  const temporal: Record<string, unknown> = { ...security.temporal };
  const temporalAddress = nonEmpty(env['LIGHTMEM_TEMPORAL_ADDRESS']);
  if (temporalAddress !== undefined) temporal['address'] = temporalAddress;
  if (Object.keys(temporal).length > 0) fromEnv['temporal'] = temporal;
  const overrides = (sources.overrides ?? {}) as Record<string, unknown>;
  const dataDirSetting = overrides['dataDir'] ?? fromEnv['dataDir'];
  const dataDir = typeof dataDirSetting === 'string' ? dataDirSetting : '.lightmem';
  const file = sources.file ?? env['LIGHTMEM_CONFIG'] ?? defaultFile(dataDir);
  const fromFile = file === undefined ? {} : readConfigFile(file);
  const merged = deepMerge(
    deepMerge(deepMerge(fromFile, fromEnv), Object.keys(server).length > 0 ? { server } : {}),
    overrides,
  );
  const parsed = LightmemConfig.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') ?? '';
    throw new LightmemError(
      'config_invalid',
      `invalid configuration${file === undefined ? '' : ` (${file})`}: ${field}: ${issue?.message ?? 'invalid'}`,
      { field },
    );
  }
  const dataDirPath = resolve(parsed.data.dataDir);
  return {
    ...parsed.data,
    dataDir: dataDirPath,
    models: { ...parsed.data.models, dir: resolve(parsed.data.models.dir ?? join(dataDirPath, 'models')) },
  };
}

const falseWords = ['0', 'false', 'no', 'off'];

/**
 * TLS, SASL and credentials of Kafka, the schema registry and Elasticsearch from the environment, so that
 * secrets come from a secret store (a Kubernetes Secret, a compose env_file) and never sit in a config file.
 * Empty means unset. Secrets are taken as they are (no trimming: a password may end with a space).
 *
 * - LIGHTMEM_KAFKA_SSL (`true`/`false`), LIGHTMEM_KAFKA_SSL_CA, LIGHTMEM_KAFKA_SSL_CERT, LIGHTMEM_KAFKA_SSL_KEY
 *   (PEM paths; any of them turns TLS on)
 * - LIGHTMEM_KAFKA_SASL_MECHANISM (`plain`, `scram-sha-256`, `scram-sha-512`), LIGHTMEM_KAFKA_SASL_USERNAME,
 *   LIGHTMEM_KAFKA_SASL_PASSWORD
 * - LIGHTMEM_KAFKA_KEY_ENCRYPTION_KEY (wraps the per-user keys of erasure by crypto-shredding)
 * - LIGHTMEM_REGISTRY_USERNAME, LIGHTMEM_REGISTRY_PASSWORD, LIGHTMEM_REGISTRY_CA
 * - LIGHTMEM_ES_API_KEY, or LIGHTMEM_ES_USERNAME + LIGHTMEM_ES_PASSWORD; LIGHTMEM_ES_CA
 * - LIGHTMEM_TEMPORAL_API_KEY; LIGHTMEM_TEMPORAL_CA, LIGHTMEM_TEMPORAL_CERT, LIGHTMEM_TEMPORAL_KEY,
 *   LIGHTMEM_TEMPORAL_SERVER_NAME (any of the four turns TLS on)
 */
export function securityFromEnv(env: Readonly<Record<string, string | undefined>>): {
  kafka: Record<string, unknown>;
  registry: Record<string, unknown>;
  elasticsearch: Record<string, unknown>;
  temporal: Record<string, unknown>;
} {
  const set = (target: Record<string, unknown>, key: string, name: string): void => {
    const value = nonEmpty(env[name]);
    if (value !== undefined) target[key] = value;
  };
  const kafka: Record<string, unknown> = {};
  const ssl: Record<string, unknown> = {};
  set(ssl, 'ca', 'LIGHTMEM_KAFKA_SSL_CA');
  set(ssl, 'cert', 'LIGHTMEM_KAFKA_SSL_CERT');
  set(ssl, 'key', 'LIGHTMEM_KAFKA_SSL_KEY');
  const sslSwitch = nonEmpty(env['LIGHTMEM_KAFKA_SSL'])?.trim().toLowerCase();
  // `true` is an empty TLS object, so that it keeps the CA a config file names (deep merge).
  if (sslSwitch !== undefined && falseWords.includes(sslSwitch)) kafka['ssl'] = false;
  else if (sslSwitch !== undefined || Object.keys(ssl).length > 0) kafka['ssl'] = ssl;
  const sasl: Record<string, unknown> = {};
  const mechanism = nonEmpty(env['LIGHTMEM_KAFKA_SASL_MECHANISM']);
  if (mechanism !== undefined) sasl['mechanism'] = mechanism.trim().toLowerCase();
  set(sasl, 'username', 'LIGHTMEM_KAFKA_SASL_USERNAME');
  set(sasl, 'password', 'LIGHTMEM_KAFKA_SASL_PASSWORD');
  if (Object.keys(sasl).length > 0) kafka['sasl'] = sasl;
  set(kafka, 'keyEncryptionKey', 'LIGHTMEM_KAFKA_KEY_ENCRYPTION_KEY');
  const registry: Record<string, unknown> = {};
  set(registry, 'username', 'LIGHTMEM_REGISTRY_USERNAME');
  set(registry, 'password', 'LIGHTMEM_REGISTRY_PASSWORD');
  const registryCa = nonEmpty(env['LIGHTMEM_REGISTRY_CA']);
  if (registryCa !== undefined) registry['tls'] = { ca: registryCa };
  const elasticsearch: Record<string, unknown> = {};
  set(elasticsearch, 'apiKey', 'LIGHTMEM_ES_API_KEY');
  set(elasticsearch, 'username', 'LIGHTMEM_ES_USERNAME');
  set(elasticsearch, 'password', 'LIGHTMEM_ES_PASSWORD');
  const esCa = nonEmpty(env['LIGHTMEM_ES_CA']);
  if (esCa !== undefined) elasticsearch['tls'] = { ca: esCa };
  const temporal: Record<string, unknown> = {};
  set(temporal, 'apiKey', 'LIGHTMEM_TEMPORAL_API_KEY');
  const temporalTls: Record<string, unknown> = {};
  set(temporalTls, 'ca', 'LIGHTMEM_TEMPORAL_CA');
  set(temporalTls, 'cert', 'LIGHTMEM_TEMPORAL_CERT');
  set(temporalTls, 'key', 'LIGHTMEM_TEMPORAL_KEY');
  set(temporalTls, 'serverName', 'LIGHTMEM_TEMPORAL_SERVER_NAME');
  if (Object.keys(temporalTls).length > 0) temporal['tls'] = temporalTls;
  return { kafka, registry, elasticsearch, temporal };
}

function defaultFile(dataDir: string): string | undefined {
  const candidate = join(dataDir, 'config.json');
  return existsSync(candidate) ? candidate : undefined;
}

function readConfigFile(file: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new LightmemError('config_invalid', `cannot read configuration file ${file}`, { cause: error });
  }
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
