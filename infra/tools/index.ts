import { schemathesisTool } from './schemathesis.js';
import type { InfraTool } from './tool.js';

/** Every tool `tsx infra/cli.ts install <tool>` knows; tests install theirs on demand. */
export function allTools(): InfraTool[] {
  return [schemathesisTool];
}
