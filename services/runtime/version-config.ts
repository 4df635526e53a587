import { LightmemConfig } from '../core/config.js';
import type { PipelineVersion } from '../core/ports/pipeline-versions.js';

/**
 * The part of a configuration a pipeline version keeps: everything that decides what memories are derived
 * and how they are searched. Where the data lives, how this process serves and logs, the mode and the
 * connections to the servers (addresses and credentials: a version's configuration is stored in the
 * registry, which in distributed mode is an Elasticsearch document) are the process's own, never the
 * version's.
 */
export function versionConfigJson(config: LightmemConfig): string {
  const processOwn = new Set<string>(processFields);
  return JSON.stringify(Object.fromEntries(Object.entries(config).filter(([key]) => !processOwn.has(key))));
}

const processFields = [
  'dataDir',
  'server',
  'logLevel',
  'mode',
  'kafka',
  'registry',
  'elasticsearch',
  'temporal',
  'sqlite',
] as const satisfies readonly (keyof LightmemConfig)[];

/** The configuration a version derives with: its kept part over this process's own (version 1: the process's). */
export function versionConfig(process: LightmemConfig, version: PipelineVersion): LightmemConfig {
  if (version.config === null) return process;
  const kept = JSON.parse(version.config) as Record<string, unknown>;
  return LightmemConfig.parse({
    ...kept,
    ...Object.fromEntries(processFields.map((field) => [field, process[field]])),
  });
}
