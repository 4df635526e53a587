import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { InfraError } from './infra-error.js';

export interface JavaHome {
  readonly home: string;
  readonly java: string;
  readonly major: number;
}

function majorOf(java: string): number | null {
  const result = spawnSync(java, ['-XshowSettings:properties', '-version'], { encoding: 'utf8' });
  const match = /java\.specification\.version = (\d+)/.exec(`${result.stderr}${result.stdout}`);
  return match === null ? null : Number(match[1]);
}

function candidates(): string[] {
  const homes: string[] = [];
  for (const name of ['LIGHTMEM_JAVA_HOME', 'JAVA_HOME']) {
    const value = process.env[name];
    if (value !== undefined && value !== '') homes.push(value);
  }
  for (const root of ['/usr/lib/jvm', '/usr/local/lib/jvm', '/opt/java']) {
    if (!existsSync(root)) continue;
    for (const entry of readdirSync(root).sort()) homes.push(join(root, entry));
  }
  return homes;
}

/**
 * A JDK of at least `minMajor` (Kafka and the registry need 17, Elasticsearch 8 takes 17+). Prefers the
 * lowest suitable version, so every server runs on the most conservative JVM that works.
 */
export function findJava(minMajor: number): JavaHome {
  const found: JavaHome[] = [];
  const seen = new Set<string>();
  for (const home of candidates()) {
    const java = join(home, 'bin', 'java');
    if (seen.has(java) || !existsSync(java)) continue;
    seen.add(java);
    const major = majorOf(java);
    if (major !== null) found.push({ home, java, major });
  }
  const suitable = found.filter((j) => j.major >= minMajor).sort((a, b) => a.major - b.major);
  const best = suitable[0];
  if (best === undefined) {
    const have = found.map((j) => `${j.major} (${j.home})`).join(', ') || 'none';
    throw new InfraError(
      `no Java ${minMajor}+ found (have: ${have}). Install one (apt install openjdk-17-jre-headless) or set LIGHTMEM_JAVA_HOME.`,
    );
  }
  return best;
}
