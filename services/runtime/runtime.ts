import type { LightmemConfig } from '../core/config.js';
import type { EventLog } from '../core/ports/event-log.js';
import type { MemoryStore } from '../core/ports/memory-store.js';
import type { PipelineComponents, StageDefinition, StageLag } from './pipeline.js';

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
  /** Starts the stages in this process when this runtime runs them; returns whether this process does. */
  startPipeline(): boolean;
  readonly isRunningPipeline: boolean;
  /** Where the pipeline runs, for messages. */
  readonly pipelineDescription: string;
  lag(): Promise<StageLag[]>;
  /** Resolves when every stage has processed everything appended so far. */
  waitForDrain(options?: DrainOptions): Promise<void>;
  close(): Promise<void>;
}
