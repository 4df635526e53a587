import type { SqliteDatabase } from './database.js';

/**
 * Which process runs the embedded pipeline over a data dir. One owner at a time: a live owner with a
 * fresh heartbeat keeps it; a dead one (kill -9) is taken over at once, a hung one after `staleMs`.
 */
export class OwnerLock {
  private readonly pid = process.pid;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly name: string,
    private readonly staleMs = 15_000,
  ) {}

  tryAcquire(now: number): boolean {
    return this.db
      .transaction(() => {
        const row = this.db
          .prepare<[string], { pid: number; heartbeat_at: number }>(
            'SELECT pid, heartbeat_at FROM owners WHERE name = ?',
          )
          .get(this.name);
        if (
          row !== undefined &&
          row.pid !== this.pid &&
          isAlive(row.pid) &&
          now - row.heartbeat_at < this.staleMs
        ) {
          return false;
        }
        this.db
          .prepare<[string, number, number]>(
            'INSERT INTO owners (name, pid, heartbeat_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET pid = excluded.pid, heartbeat_at = excluded.heartbeat_at',
          )
          .run(this.name, this.pid, now);
        return true;
      })
      .immediate();
  }

  /** Refreshes the heartbeat; false if another process took the lock meanwhile. */
  heartbeat(now: number): boolean {
    const result = this.db
      .prepare<[number, string, number]>('UPDATE owners SET heartbeat_at = ? WHERE name = ? AND pid = ?')
      .run(now, this.name, this.pid);
    return result.changes === 1;
  }

  release(): void {
    this.db
      .prepare<[string, number]>('DELETE FROM owners WHERE name = ? AND pid = ?')
      .run(this.name, this.pid);
  }

  owner(): number | null {
    const row = this.db
      .prepare<[string], { pid: number }>('SELECT pid FROM owners WHERE name = ?')
      .get(this.name);
    return row === undefined ? null : row.pid;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error instanceof Error && 'code' in error && error.code === 'EPERM';
  }
}
