import type { StateReader, StateWrite } from '../../core/ports/event-log.js';
import type { PartitionEnd } from './kafka-range-reader.js';
import { stateKeyOwner } from '../../stages/state-keys.js';

/**
 * A stage's keyed state in memory, rebuilt from its compacted changelog topic (a null value deletes a
 * key) and kept current by the stage's own committed batches. Values are kept per changelog partition:
 * a restore reads the partitions in no particular order relative to each other, only each one in order,
 * so a key that moved between partitions (its old value deleted in the same transaction as the new one
 * was written) ends up with exactly its current value, whatever the interleaving.
 */
export class StageState {
  /** Partition → key → value. */
  private readonly partitions = new Map<number, Map<string, string>>();
  private ends: readonly PartitionEnd[] | null = null;

  applyChangelog(partition: number, key: string, value: Buffer | null): void {
    if (value === null) this.partitions.get(partition)?.delete(key);
    else this.partition(partition).set(key, value.toString('utf8'));
  }

  /**
   * Writes of a batch of `partition` whose transaction committed. A key written here whose value was in
   * another partition is gone from there (the batch deleted it there too, see movedKeys).
   */
  apply(partition: number, writes: readonly StateWrite[]): void {
    for (const write of writes) {
      for (const [other, values] of this.partitions) if (other !== partition) values.delete(write.key);
      if (write.value === null) this.partitions.get(partition)?.delete(write.key);
      else this.partition(partition).set(write.key, write.value);
    }
    this.ends = null;
  }

  /** Drops every key of one user (erased): state keys name their tenant and user (see `stateKeyOwner`). */
  dropOwned(owner: { readonly tenantId: string; readonly userId: string }): void {
    for (const values of this.partitions.values()) {
      for (const key of [...values.keys()]) {
        const keyOwner = stateKeyOwner(key);
        if (keyOwner?.tenantId === owner.tenantId && keyOwner.userId === owner.userId) values.delete(key);
      }
    }
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

  /**
   * Keys a batch of `partition` writes whose current value lives in another partition: a conversation
   * whose record key changed (ids with '/' got unambiguous keys) now arrives on another partition. The
   * batch deletes each old value where it is, in its transaction (see `apply`).
   */
  movedKeys(partition: number, writes: readonly StateWrite[]): { key: string; partition: number }[] {
    return writes.flatMap((write) => {
      const at = this.partitionOf(write.key);
      return at === undefined || at === partition ? [] : [{ key: write.key, partition: at }];
    });
  }

  /** The partition a key's current value is in, if it has one. */
  partitionOf(key: string): number | undefined {
    for (const [partition, values] of this.partitions) if (values.has(key)) return partition;
    return undefined;
  }

  get(key: string, owned?: ReadonlySet<number>): string | undefined {
    for (const [partition, values] of this.partitions) {
      if (owned !== undefined && !owned.has(partition)) continue;
      const value = values.get(key);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  keys(prefix: string, owned?: ReadonlySet<number>): string[] {
    const keys = new Set<string>();
    for (const [partition, values] of this.partitions) {
      if (owned !== undefined && !owned.has(partition)) continue;
      for (const key of values.keys()) if (key.startsWith(prefix)) keys.add(key);
    }
    return [...keys].sort();
  }

  private partition(partition: number): Map<string, string> {
    let values = this.partitions.get(partition);
    if (values === undefined) {
      values = new Map();
      this.partitions.set(partition, values);
    }
    return values;
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
