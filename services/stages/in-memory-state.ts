import type { StateReader, StateWrite } from '../core/ports/event-log.js';

/** A stage's keyed state held in memory, for running a stage outside an event log (benchmarks, tests). */
export class InMemoryState implements StateReader {
  readonly map = new Map<string, string>();

  apply(writes: readonly StateWrite[]): this {
    for (const write of writes) {
      if (write.value === null) this.map.delete(write.key);
      else this.map.set(write.key, write.value);
    }
    return this;
  }

  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.map.get(key));
  }

  keys(prefix: string): Promise<string[]> {
    return Promise.resolve([...this.map.keys()].filter((key) => key.startsWith(prefix)).sort());
  }
}
