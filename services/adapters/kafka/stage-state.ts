import type { StateReader, StateWrite } from '../../core/ports/event-log.js';
import type { PartitionEnd } from './kafka-range-reader.js';

/**
 * A stage's keyed state in memory, rebuilt from its compacted changelog topic (a null value deletes a
 * key) and kept current by the stage's own committed batches.
 */
export class StageState {
  private readonly values = new Map<string, string>();
  private ends: readonly PartitionEnd[] | null = null;

  applyChangelog(key: string, value: Buffer | null): void {
    if (value === null) this.values.delete(key);
    else this.values.set(key, value.toString('utf8'));
  }

  /** Writes of a batch whose transaction committed. */
  apply(writes: readonly StateWrite[]): void {
    for (const write of writes) {
      if (write.value === null) this.values.delete(write.key);
      else this.values.set(write.key, write.value);
    }
    this.ends = null;
  }

  /** Records that this state reflects the changelog up to these ends. */
  markAt(ends: readonly PartitionEnd[]): void {
    this.ends = ends;
  }

  /** Whether the changelog has not moved since this state was read. */
  isAt(ends: readonly PartitionEnd[]): boolean {
    const known = this.ends;
    if (known === null || known.length !== ends.length) return false;
    return ends.every((e) => known.some((k) => k.partition === e.partition && k.end === e.end));
  }

  get(key: string): string | undefined {
    return this.values.get(key);
  }

  keys(prefix: string): string[] {
    const keys: string[] = [];
    for (const key of this.values.keys()) if (key.startsWith(prefix)) keys.push(key);
    return keys.sort();
  }

  reader(): StateReader {
    return {
      get: (key) => Promise.resolve(this.get(key)),
      keys: (prefix) => Promise.resolve(this.keys(prefix)),
    };
  }
}
