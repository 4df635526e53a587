import type { InfraLayout } from '../lib/layout.js';

/** A program the tests run (not a server): installed into the infra cache once, on demand. */
export interface InfraTool {
  readonly name: string;
  /** What and which version, for status lines. */
  readonly summary: string;
  /** Installs into the cache (a no-op when it is complete); resolves with the executable's path. */
  install(layout: InfraLayout, say: (message: string) => void): Promise<string>;
}
