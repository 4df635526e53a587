import type { InfraLayout, ServerPaths } from './layout.js';
import type { StartCommand } from './processes.js';

export interface ServerContext {
  readonly layout: InfraLayout;
  readonly paths: ServerPaths;
  /** Progress lines for the user (stderr). */
  readonly say: (message: string) => void;
}

/** One real server the project fetches, configures, starts, health-checks and stops itself. */
export interface ServerSpec {
  readonly name: string;
  /** What and which version, for status lines. */
  readonly summary: string;
  /** Every port the server binds (checked before start, so a taken port is a clear error). */
  readonly ports: readonly number[];
  /** Where clients connect. */
  readonly endpoint: string;
  /** Servers that must be up first. */
  readonly dependsOn: readonly string[];
  /** Fetches into the cache; a no-op when the cache is complete. */
  install(context: ServerContext): Promise<void>;
  /** Writes configuration, prepares data folders (idempotent) and says how to start. */
  prepare(context: ServerContext): Promise<StartCommand>;
  /** True when the server answers its health check. */
  healthy(context: ServerContext): Promise<boolean>;
  readonly startTimeoutMs: number;
  readonly stopGraceMs: number;
}

/** Runs a probe that may throw or hang, as a boolean with a timeout. */
export async function probe(
  check: (signal: AbortSignal) => Promise<boolean>,
  timeoutMs = 2_000,
): Promise<boolean> {
  // The signal alone stops nothing that ignores it (a client stuck in connect): race it as well.
  const signal = AbortSignal.timeout(timeoutMs);
  const timedOut = new Promise<boolean>((resolve) =>
    signal.addEventListener('abort', () => resolve(false), { once: true }),
  );
  try {
    return await Promise.race([check(signal), timedOut]);
  } catch {
    return false;
  }
}
