/**
 * Making committed WAL transactions durable off the event loop (the gateway's group commit, the
 * client's outbox: its prepared packets and the sender's bookkeeping).
 *
 * With `synchronous=FULL` SQLite fsyncs the WAL inside every COMMIT, and better-sqlite3 runs
 * that on the event loop: the gateway's intake then stands still for the whole fsync (1 to 10
 * ms on a shared disk) before it can decide the next batch. With `synchronous=NORMAL` a WAL
 * COMMIT only write()s its frames, commit frame included, into the page cache; it is lost on
 * power loss until the WAL is fsynced (https://www.sqlite.org/pragma.html#pragma_synchronous,
 * https://www.sqlite.org/wal.html). An fsync of the WAL file started after such a COMMIT
 * returned makes it as durable as FULL would have, because recovery replays every frame up to
 * the last valid commit frame; a checkpoint in between fsyncs the WAL itself before copying it
 * into the database, and the WAL header when the file is reused.
 *
 * So the group commit commits a batch under NORMAL, goes on deciding the next one, and answers
 * the batch (its ACKs) only once an fsync of the WAL that started after that COMMIT has
 * completed on libuv's thread pool. This is the classic group-commit pipeline; the durability
 * rule "no ACK for state a crash can lose" is unchanged.
 */
import { closeSync, fstatSync, fsync, fsyncSync, openSync, statSync } from 'node:fs';

export class WalSync {
  private fd: number | undefined;
  private readonly walPath: string | null;

  /** `dbPath` ':memory:' has no file: every sync completes at once. */
  constructor(dbPath: string) {
    this.walPath = dbPath === ':memory:' ? null : `${dbPath}-wal`;
  }

  /** fsyncs the WAL on the thread pool; `done` runs once everything committed before this call is on disk. */
  sync(done: (err: Error | null) => void): void {
    let fd: number | undefined;
    try {
      fd = this.current();
    } catch (e) {
      setImmediate(done, e as Error);
      return;
    }
    if (fd === undefined) {
      setImmediate(done, null);
      return;
    }
    fsync(fd, (err) => done(err));
  }

  /** The same, on the calling thread (shutdown). */
  syncNow(): void {
    const fd = this.current();
    if (fd !== undefined) fsyncSync(fd);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /**
   * The WAL's descriptor, reopened if the file was replaced (SQLite deletes the WAL when the last
   * connection closes, after a full checkpoint; a new one is a new inode). No WAL file: nothing
   * is waiting in one.
   */
  private current(): number | undefined {
    if (this.walPath === null) return undefined;
    let ino: number;
    try {
      ino = statSync(this.walPath).ino;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        this.close();
        return undefined;
      }
      throw e;
    }
    if (this.fd !== undefined && fstatSync(this.fd).ino !== ino) this.close();
    // opened for writing only because POSIX lets fsync refuse a read-only descriptor; nothing is written through it
    this.fd ??= openSync(this.walPath, 'r+');
    return this.fd;
  }
}
