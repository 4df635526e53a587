/**
 * The usage of the benchmarks whose modules load heavy clients (Kafka, Elasticsearch, Temporal, the HTTP
 * server): `lightmem bench --help` and the other benchmarks print it without importing them.
 */

export const distributedBenchUsage = `lightmem bench distributed --data <locomo.json> [--config F] [--json]
  Embedded vs distributed on the same file, models and configuration, in one run: ingest turns/s of each
  and their ratio (the distributed side runs the four stages as \`lightmem service\` processes), whether both
  made the same memory ids, top-10 overlap and gold-turn agreement of every question's search, and search
  latency on SQLite vs Elasticsearch at the same corpus size. Needs the servers (npm run infra:up).`;

export const loadBenchUsage = `lightmem bench load --data <locomo.json> [--idle-queries 300] [--query-interval-ms 50] [--limit 10] [--clients 4] [--throughput-seconds 10] [--json]
  Search under load, with authentication on: starts \`lightmem serve\` on a fresh data dir (same models and
  configuration) with two tenants and an API key each, posts the file as tenant bench-a (one batch per
  session, ending it) and waits until it is processed, measures search and /healthz latency idle and the
  searches/s of --clients clients searching as fast as answers come, then posts the file again as tenant
  bench-b and searches bench-a every --query-interval-ms while that backlog drains. Prints events/s
  accepted and processed, p50/p95/p99 idle vs under load, searches/s, and the error rate.`;

export const scaleBenchUsage = `lightmem bench scale [--sizes 1000,10000,100000] [--queries 200] [--limit 10] [--users 100]
    [--layouts user,tenant] [--dims 384] [--seed 42] [--dir D] [--elasticsearch] [--elasticsearch-url URL] [--json]
  Search latency as the store grows, with synthetic memories (seeded, no model): for each size a store with
  one user holding all of them (user) and one with them spread over --users users of a tenant (tenant);
  p50/p95 of user-scoped lexical, kNN-only and hybrid searches. SQLite always (files in --dir, else a
  temporary folder, removed after each case); Elasticsearch too with --elasticsearch (the configured
  cluster) or --elasticsearch-url, with its kNN recall@10 against SQLite's exact kNN (HNSW's own error)
  and its hybrid top-10 agreement (which BM25 differences between the stores also move). With --json the
  last line is one JSON object.`;
