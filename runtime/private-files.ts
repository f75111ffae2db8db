/**
 * Files and directories only the daemon's user may read: data directories (0700), databases
 * holding tokens, SURB keys, message bodies or user secrets and their SQLite -wal/-shm
 * siblings, mailbox ids, token bundles (0600). Existing ones are tightened, not just new ones:
 * a data_dir created by hand or by an older version with the umask's 0755 would otherwise stay
 * readable by every local user.
 */
import { chmodSync, closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';

/** Creates `dir` (and missing parents, 0700) and makes it 0700. */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * Makes `path` exist with mode 0600 before SQLite (or anything else) opens it, and tightens its
 * -wal, -shm and -journal siblings if they exist. SQLite creates those with the mode of the
 * database file, so a database made here keeps all of them private.
 */
export function privateFile(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
  for (const s of ['-wal', '-shm', '-journal']) if (existsSync(path + s)) chmodSync(path + s, 0o600);
}

/** Writes `data` to `path` with mode 0600 (also when the file existed with a looser mode), fsync'd. */
export function writePrivateFile(path: string, data: string | Uint8Array): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    fchmodSync(fd, 0o600);
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
