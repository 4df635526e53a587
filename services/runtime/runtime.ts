import type { RunHistories } from '../core/ports/run-histories.js';
import type { LightmemConfig } from '../core/config.js';
import type { EventLog } from '../core/ports/event-log.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { PipelineComponents, StageDefinition, StageLag } from './pipeline.js';
import type { Clock } from '../core/ports/clock.js';
import type { Logger } from '../core/ports/logger.js';
import type { Embedder } from '../core/ports/embedder.js';
import type { TokenScorer } from '../core/ports/token-scorer.js';
import type { ChatModel } from '../core/ports/chat-model.js';
import type { Extractor } from '../core/ports/extractor.js';
import type { LlmLedger } from '../core/ports/llm-ledger.js';
import type { AttentionModel } from '../core/ports/segmenter.js';
import type { FetchProgress } from '../models/model-fetcher.js';
import type { FusionWeights } from '../adapters/memory/memory-fusion.js';
import type { PipelineHealth } from './pipeline-health.js';
import type { ReplaysDeps } from '../app/replays.js';
import type {
  ConsolidationScope,
  ConsolidationSummary,
} from '../../workflows/consolidation/activity-types.js';

/** What replay needs of a runtime (see `Replays`), and what erasure must also reach. */
export interface ReplayParts extends Omit<ReplaysDeps, 'configJson' | 'clock'> {
  /** The first version's own store (the runtime's `store` routes reads to the serving version). */
  readonly firstStore: MemoryStore;
  /** The logs and stores of the kept versions besides the first: erasing a user reaches each. */
  readonly laterVersions: () => Promise<{ log: EventLog; store: MemoryStore }[]>;
  /** Marks the versions that have caught up with the raw log as built. */
  readonly markCaughtUp: () => Promise<void>;
}

export interface DrainOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (lags: StageLag[]) => void;
  readonly pollMs?: number;
}

/**
 * What the front ends (CLI, HTTP API) use, whichever way the pipeline runs: embedded (one process,
 * SQLite) or distributed (Kafka + schema registry + Elasticsearch, one process per stage).
 */
export interface Runtime {
  readonly config: LightmemConfig;
  readonly eventLog: EventLog;
  readonly store: MemoryStore;
  readonly components: PipelineComponents;
  readonly stages: readonly StageDefinition[];
  /** Features that are off because a model is missing, and how to turn them on. */
  readonly warnings: readonly string[];
  /** The cost ledger: every LLM call of the pipeline, with its tenant, tokens and outcome. */
  readonly ledger: LlmLedger;
  /** Consolidation runs kept outside the store (Temporal's histories), which erasure deletes too. */
  readonly runHistories?: RunHistories | undefined;
  /** Starts the stages in this process when this runtime runs them; returns whether this process does. */
  startPipeline(): boolean;
  readonly isRunningPipeline: boolean;
  /** Where the pipeline runs, for messages. */
  readonly pipelineDescription: string;
  lag(): Promise<StageLag[]>;
  /** Whether the pipeline runs with every stage alive, where, and why not (for health answers). */
  health(): Promise<PipelineHealth>;
  /**
   * Runs sleep-time consolidation of one user now (embedded: in this process; distributed: a Temporal
   * workflow) and reports its decisions; with `dryRun` nothing is appended or applied.
   */
  consolidate(
    scope: ConsolidationScope,
    options: { dryRun: boolean; signal?: AbortSignal },
  ): Promise<ConsolidationSummary>;
  /** The embedder of the pipeline version serving a tenant's reads (absent: `components.embedder`). */
  readonly embedderFor?: ((tenantId: string) => Promise<Embedder | null>) | undefined;
  /** Pipeline versions and replay. */
  readonly replay: ReplayParts;
  /** Resolves when every stage has processed everything appended so far. */
  waitForDrain(options?: DrainOptions): Promise<void>;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  readonly logger: Logger;
  readonly clock: Clock;
  /**
   * Models to use instead of the configured ones (tests): an embedder (null = none) and optionally an
   * attention model. When absent, the configured models are loaded (and fetched on first use).
   */
  readonly models?:
    | {
        readonly embedder: Embedder | null;
        readonly attention?: AttentionModel | null;
        /** The compressor's token scorer (default: the built-in heuristic one). */
        readonly scorer?: TokenScorer | null;
      }
    | undefined;
  /** A chat model to use instead of the configured endpoint (tests); the summarizer's LLM extractor uses it. */
  readonly chat?: ChatModel | undefined;
  /** Wraps the configured extractor (a benchmark's dry run counts what an LLM extractor would send). */
  readonly wrapExtractor?: ((configured: Extractor, config: LightmemConfig) => Extractor) | undefined;
  /** Where the LLM key is read (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** The process answers API requests (`lightmem serve`): pipeline isolation `auto` means a worker thread. */
  readonly serving?: boolean | undefined;
  /** Download progress when a model is fetched on first use. */
  readonly onFetchProgress?: ((progress: FetchProgress) => void) | undefined;
}

/** The store's fusion weights from the configuration (both stores fuse the same way). */
export function fusionOf(config: LightmemConfig): FusionWeights {
  return {
    lexicalWeight: config.store.lexicalWeight,
    semanticWeight: config.store.semanticWeight,
    normalization: config.store.normalization,
  };
}
