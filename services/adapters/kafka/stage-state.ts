import type { StateReader, StateWrite } from '../../core/ports/event-log.js';
import type { PartitionEnd } from './kafka-range-reader.js';

/**
 * A stage's keyed state in memory, rebuilt from its compacted changelog topic (a null value deletes a
 * key) and kept current by the stage's own committed batches.
 */
export class StageState {
  /** Key → value and the partition (of the input and the changelog) it belongs to. */
  private readonly values = new Map<string, { value: string; partition: number }>();
  private ends: readonly PartitionEnd[] | null = null;

  applyChangelog(partition: number, key: string, value: Buffer | null): void {
    if (value === null) this.values.delete(key);
    else this.values.set(key, { value: value.toString('utf8'), partition });
  }

  /** Writes of a batch of `partition` whose transaction committed. */
  apply(partition: number, writes: readonly StateWrite[]): void {
    for (const write of writes) {
      if (write.value === null) this.values.delete(write.key);
      else this.values.set(write.key, { value: write.value, partition });
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

  /** The partition a key's current value is in, if it has one. */
  partitionOf(key: string): number | undefined {
    return this.values.get(key)?.partition;
  }

  get(key: string, owned?: ReadonlySet<number>): string | undefined {
    const entry = this.values.get(key);
    if (entry === undefined || (owned !== undefined && !owned.has(entry.partition))) return undefined;
    return entry.value;
  }

  keys(prefix: string, owned?: ReadonlySet<number>): string[] {
    const keys: string[] = [];
    for (const [key, entry] of this.values) {
      if (key.startsWith(prefix) && (owned === undefined || owned.has(entry.partition))) keys.push(key);
    }
    return keys.sort();
  }

  /**
   * A read view; with `owned`, only the keys of those partitions (what this replica of a stage owns: the
   * rest may be stale, since other replicas write it).
   */
  reader(owned?: ReadonlySet<number>): StateReader {
    return {
      get: (key) => Promise.resolve(this.get(key, owned)),
      keys: (prefix) => Promise.resolve(this.keys(prefix, owned)),
    };
  }
}
