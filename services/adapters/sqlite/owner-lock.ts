import { writeTransaction, type SqliteDatabase } from './database.js';

/** The process that holds a lock, as the lock's row says. */
export interface LockHolder {
  readonly pid: number;
  readonly heartbeatAt: number;
  /** What the holder last reported about the work the lock guards (free text, e.g. JSON). */
  readonly status: string;
  /** Whether that process exists on this machine. */
  readonly alive: boolean;
  /** Whether its heartbeat is recent enough to keep the lock. */
  readonly fresh: boolean;
}

/**
 * Which process runs the embedded pipeline over a data dir. One owner at a time: a live owner with a
 * fresh heartbeat keeps it; a dead one (kill -9) is taken over at once, a hung one after `staleMs`. The
 * owner's heartbeat also carries its status, so every process sharing the data dir can tell the truth
 * about the pipeline in its health answer.
 */
export class OwnerLock {
  private readonly statements;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly name: string,
    readonly staleMs = 15_000,
    /** The process this lock speaks for (tests stand in for several processes). */
    private readonly pid = process.pid,
  ) {
    this.statements = {
      holder: db.prepare<[string], { pid: number; heartbeat_at: number; status: string }>(
        'SELECT pid, heartbeat_at, status FROM owners WHERE name = ?',
      ),
      take: db.prepare<[string, number, number, string]>(
        'INSERT INTO owners (name, pid, heartbeat_at, status) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET pid = excluded.pid, heartbeat_at = excluded.heartbeat_at, status = excluded.status',
      ),
      beat: db.prepare<[number, string, string, number]>(
        'UPDATE owners SET heartbeat_at = ?, status = ? WHERE name = ? AND pid = ?',
      ),
      release: db.prepare<[string, number]>('DELETE FROM owners WHERE name = ? AND pid = ?'),
    };
  }

  /** Takes the lock unless a live process holds it with a fresh heartbeat. */
  tryAcquire(now: number, status = ''): boolean {
    return writeTransaction(this.db, 'taking the pipeline lock', () => {
      const holder = this.holder(now);
      if (holder !== null && holder.pid !== this.pid && holder.alive && holder.fresh) return false;
      this.statements.take.run(this.name, this.pid, now, status);
      return true;
    });
  }

  /** Refreshes the heartbeat and status; false if another process took the lock meanwhile. */
  heartbeat(now: number, status = ''): boolean {
    return writeTransaction(
      this.db,
      'renewing the pipeline lock',
      () => this.statements.beat.run(now, status, this.name, this.pid).changes === 1,
    );
  }

  release(): void {
    writeTransaction(this.db, 'releasing the pipeline lock', () =>
      this.statements.release.run(this.name, this.pid),
    );
  }

  /** Who holds the lock now, or null when nobody does. */
  holder(now: number): LockHolder | null {
    const row = this.statements.holder.get(this.name);
    if (row === undefined) return null;
    return {
      pid: row.pid,
      heartbeatAt: row.heartbeat_at,
      status: row.status,
      alive: row.pid === this.pid || isAlive(row.pid),
      fresh: now - row.heartbeat_at < this.staleMs,
    };
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
