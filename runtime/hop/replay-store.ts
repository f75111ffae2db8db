/**
 * Durable replay-tag store of a mix node (or gateway): the set of 32-byte Sphinx replay tags
 * seen under each epoch key, kept across restarts and dropped when the epoch key expires.
 * Two implementations of one interface (`ReplayTagStore`), measured in bench/link.ts on the
 * 2-core dev machine (100k random tags):
 *
 * | store | seenOrAdd, durable per call | batched 32 | memory |
 * |---|---|---|---|
 * | `ReplayStore` (SQLite WAL, NORMAL) | ~18-30k/s | ~28-50k/s | bounded (page cache), tags on disk |
 * | `LogReplayStore` (Set + append log) | ~230k/s | ~560k/s | ~70 B heap per tag of the epoch |
 *
 * Default choice: SQLite, because its memory does not grow with traffic (an epoch at a few
 * thousand packets/s is tens of millions of tags) and expiry is a DROP TABLE. Its cost is a
 * random B-tree page write per commit (~40-55 µs), which batching barely amortises because
 * random tags dirty distinct pages. A node whose measured hot path is dominated by it, and that
 * has the RAM, uses `LogReplayStore` (same durability, same interface).
 *
 * SQLite details: better-sqlite3 in WAL mode, one
 * `WITHOUT ROWID` table per epoch (so expiring an epoch is a cheap DROP TABLE, not a delete of
 * millions of rows). `seenOrAdd` is one `INSERT OR IGNORE` in its own transaction: when it
 * returns, the tag is in the WAL, so the caller can forward the packet knowing a restart will
 * still refuse the replay (no loss window). `seenOrAddMany` does a batch in one transaction
 * for callers that process packets in batches.
 *
 * Durability level: `synchronous: 'normal'` (default) makes a committed tag survive a crash
 * or SIGKILL of the process (it is in the OS page cache / WAL file) but not a power loss;
 * `'full'` fsyncs the WAL on every commit (survives power loss, much slower). Power loss on a
 * mix costs little: an adversary could replay packets seen in the last moments before it.
 */
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { ReplayTagStore } from '../../proto/hop/engine.ts';

export type { ReplayTagStore };

export interface ReplayStoreOptions {
  /** 'normal' (default): durable against process crash. 'full': fsync per commit (power loss). */
  readonly synchronous?: 'normal' | 'full';
}

export const REPLAY_TAG_BYTES = 32;

function tableName(epoch: number): string {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`bad epoch ${epoch}`);
  return `tags_${epoch}`;
}

function checkTag(tag: Uint8Array): Buffer {
  if (tag.length !== REPLAY_TAG_BYTES) throw new RangeError(`replay tag must be ${REPLAY_TAG_BYTES} bytes, got ${tag.length}`);
  return Buffer.from(tag.buffer, tag.byteOffset, tag.length);
}

interface EpochStatements {
  insert: Database.Statement<[Buffer]>;
  has: Database.Statement<[Buffer]>;
  count: Database.Statement<[]>;
}

export class ReplayStore implements ReplayTagStore {
  private readonly db: Database.Database;
  private readonly stmts = new Map<number, EpochStatements>();
  private readonly many: (epoch: number, tags: readonly Uint8Array[]) => boolean[];

  /** Opens (creating if needed) the store at `path` (':memory:' for a non-durable one in tests). */
  constructor(path: string, opts: ReplayStoreOptions = {}) {
    this.db = new Database(path);
    // Small pages: each commit appends the dirtied leaf page to the WAL, and tags are random,
    // so a commit costs about one page write (measured ~1.5x faster than 4 KiB pages).
    // Only takes effect when the file is created.
    this.db.pragma('page_size = 1024');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    this.db.pragma('temp_store = MEMORY');
    this.many = this.db.transaction((epoch: number, tags: readonly Uint8Array[]) => {
      const s = this.statements(epoch);
      return tags.map((t) => s.insert.run(checkTag(t)).changes === 0);
    });
  }

  private statements(epoch: number): EpochStatements {
    let s = this.stmts.get(epoch);
    if (s === undefined) {
      const t = tableName(epoch);
      this.db.exec(`CREATE TABLE IF NOT EXISTS ${t} (tag BLOB PRIMARY KEY) WITHOUT ROWID`);
      s = {
        insert: this.db.prepare<[Buffer]>(`INSERT OR IGNORE INTO ${t} (tag) VALUES (?)`),
        has: this.db.prepare<[Buffer]>(`SELECT 1 FROM ${t} WHERE tag = ?`).pluck(),
        count: this.db.prepare<[]>(`SELECT count(*) FROM ${t}`).pluck(),
      };
      this.stmts.set(epoch, s);
    }
    return s;
  }

  /**
   * Records `tag` under `epoch`. Returns true when the tag was already there (a replay: drop
   * the packet), false when it is new. The tag is committed before this returns.
   */
  seenOrAdd(epoch: number, tag: Uint8Array): boolean {
    return this.statements(epoch).insert.run(checkTag(tag)).changes === 0;
  }

  /** `seenOrAdd` for a batch, in one transaction; result[i] is true when tags[i] is a replay
   * (including a duplicate earlier in the same batch). */
  seenOrAddMany(epoch: number, tags: readonly Uint8Array[]): boolean[] {
    return this.many(epoch, tags);
  }

  /** Whether `tag` was seen under `epoch` (does not add it). */
  has(epoch: number, tag: Uint8Array): boolean {
    if (!this.epochs().includes(epoch)) return false;
    return this.statements(epoch).has.get(checkTag(tag)) !== undefined;
  }

  /** Number of tags stored for `epoch`. */
  count(epoch: number): number {
    if (!this.epochs().includes(epoch)) return 0;
    return this.statements(epoch).count.get() as number;
  }

  /** Epochs with a tag table, ascending. */
  epochs(): number[] {
    const rows = this.db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tags\\_%' ESCAPE '\\'`).pluck().all() as string[];
    return rows
      .map((n) => Number(n.slice(5)))
      .filter((n) => Number.isSafeInteger(n))
      .sort((a, b) => a - b);
  }

  /** Forgets every tag of `epoch` (its key expired). */
  dropEpoch(epoch: number): void {
    const t = tableName(epoch);
    this.stmts.delete(epoch);
    this.db.exec(`DROP TABLE IF EXISTS ${t}`);
  }

  /** Drops every epoch older than `epoch`; returns the epochs dropped. */
  dropEpochsBefore(epoch: number): number[] {
    const old = this.epochs().filter((e) => e < epoch);
    for (const e of old) this.dropEpoch(e);
    return old;
  }

  /** Nothing to do: each `seenOrAdd` / `seenOrAddMany` committed its tags before it returned. */
  flush(): void {}

  /** Checkpoints the WAL and closes the database. */
  close(): void {
    if (!this.db.open) return;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}

/** One epoch of a LogReplayStore: its tags, its log file, and the tags not written yet. */
interface EpochLog {
  readonly set: Set<string>;
  /** opened on the first write */
  fd: number | undefined;
  /** taken tags not yet in the file: `pending[0 .. len)`, whole records */
  pending: Buffer;
  len: number;
}

/** Tags held before a write is forced even without a departure (64 KiB). */
const PENDING_TAGS = 2048;

/**
 * The alternative to SQLite, measured ~10x faster on the hot path (bench/link.ts): every tag
 * of every live epoch in memory (a Set; V8 seeds its string hash, so crafted tags cannot
 * flood one bucket) plus one append-only file per epoch (`tags-<epoch>.log`, raw 32-byte
 * records). `seenOrAdd` decides at once from the Set and appends the new tag to a pending
 * buffer; `flush` writes what is pending with one write(2) per epoch, and the HopEngine calls it
 * before any packet leaves, so under load one write carries the tags of every packet that
 * arrived since the last departure instead of one write(2) per packet (~8 µs each on the 2-core
 * VM). Durability is that of SQLite with synchronous=NORMAL once `flush` returned (survives the
 * process dying, not power loss). A tag is never lost while its packet is out; a process that
 * dies loses only tags of packets still in its delay queue, which died with it. The cost is
 * memory: measured ~70 bytes of heap (~150 bytes RSS) per tag for the whole epoch (node
 * --expose-gc, 500k tags), i.e. ~250-550 MB for an hour at 1,000 packets/s; the SQLite store
 * keeps tags on disk and its memory does not grow with the epoch.
 * Opening reads every log back (a torn trailing record is cut off).
 */
export class LogReplayStore implements ReplayTagStore {
  private readonly dir: string;
  private readonly logs = new Map<number, EpochLog>();
  /** set when a tag is taken, cleared by `flush`: false means no epoch has pending tags */
  private dirty = false;
  private closed = false;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir)) {
      const m = /^tags-(\d+)\.log$/.exec(name);
      if (m === null) continue;
      const epoch = Number(m[1]);
      if (!Number.isSafeInteger(epoch)) continue;
      const path = join(dir, name);
      const buf = readFileSync(path);
      const whole = buf.length - (buf.length % REPLAY_TAG_BYTES);
      if (whole !== buf.length) truncateSync(path, whole);
      const set = new Set<string>();
      for (let i = 0; i < whole; i += REPLAY_TAG_BYTES) set.add(buf.toString('latin1', i, i + REPLAY_TAG_BYTES));
      this.logs.set(epoch, { set, fd: undefined, pending: Buffer.allocUnsafe(0), len: 0 });
    }
  }

  private path(epoch: number): string {
    tableName(epoch); // validates
    return join(this.dir, `tags-${epoch}.log`);
  }

  private log(epoch: number): EpochLog {
    if (this.closed) throw new Error('replay store closed');
    let e = this.logs.get(epoch);
    if (e === undefined) {
      tableName(epoch); // validates before anything is made for it
      e = { set: new Set(), fd: undefined, pending: Buffer.allocUnsafe(0), len: 0 };
      this.logs.set(epoch, e);
    }
    return e;
  }

  /** Room for `n` more pending records in `e`: writes what is pending when full, grows for a batch larger than the buffer. */
  private reserve(epoch: number, e: EpochLog, n: number): void {
    const need = n * REPLAY_TAG_BYTES;
    if (e.len + need <= e.pending.length) return;
    if (e.len > 0) this.write(epoch, e);
    if (need > e.pending.length) e.pending = Buffer.allocUnsafe(Math.max(need, PENDING_TAGS * REPLAY_TAG_BYTES));
  }

  /** Appends `e`'s pending records to its file; on a failed write what was not written stays pending. */
  private write(epoch: number, e: EpochLog): void {
    e.fd ??= openSync(this.path(epoch), 'a');
    let off = 0;
    try {
      while (off < e.len) off += writeSync(e.fd, e.pending, off, e.len - off);
    } finally {
      if (off < e.len) e.pending.copy(e.pending, 0, off, e.len);
      e.len -= off;
    }
  }

  seenOrAdd(epoch: number, tag: Uint8Array): boolean {
    const b = checkTag(tag);
    const e = this.log(epoch);
    const k = b.toString('latin1');
    if (e.set.has(k)) return true;
    this.reserve(epoch, e, 1);
    b.copy(e.pending, e.len);
    e.len += REPLAY_TAG_BYTES;
    e.set.add(k);
    this.dirty = true;
    return false;
  }

  seenOrAddMany(epoch: number, tags: readonly Uint8Array[]): boolean[] {
    const bufs = tags.map(checkTag);
    const e = this.log(epoch);
    // room first, so that a failed write leaves nothing of this batch taken
    this.reserve(epoch, e, bufs.length);
    const out = bufs.map((b) => {
      const k = b.toString('latin1');
      if (e.set.has(k)) return true;
      e.set.add(k);
      b.copy(e.pending, e.len);
      e.len += REPLAY_TAG_BYTES;
      this.dirty = true;
      return false;
    });
    return out;
  }

  flush(): void {
    if (!this.dirty) return;
    for (const [epoch, e] of this.logs) if (e.len > 0) this.write(epoch, e);
    this.dirty = false;
  }

  has(epoch: number, tag: Uint8Array): boolean {
    return this.logs.get(epoch)?.set.has(checkTag(tag).toString('latin1')) ?? false;
  }

  count(epoch: number): number {
    return this.logs.get(epoch)?.set.size ?? 0;
  }

  epochs(): number[] {
    return [...this.logs.keys()].sort((a, b) => a - b);
  }

  /** Forgets `epoch` with its file; its pending tags go too (its key is gone, no packet of it can arrive). */
  dropEpoch(epoch: number): void {
    const path = this.path(epoch);
    const e = this.logs.get(epoch);
    if (e?.fd !== undefined) closeSync(e.fd);
    this.logs.delete(epoch);
    rmSync(path, { force: true });
  }

  dropEpochsBefore(epoch: number): number[] {
    const old = this.epochs().filter((e) => e < epoch);
    for (const e of old) this.dropEpoch(e);
    return old;
  }

  /**
   * Writes what is pending, then closes. A failed last write is not an error here: every
   * departure flushed first, so the tags still pending belong to packets that never left (the
   * engine drops them at close), and a replay of one after the restart is taken once.
   */
  close(): void {
    if (this.closed) return;
    try {
      this.flush();
    } catch {
      // nothing that left depends on these tags (above)
    }
    this.closed = true;
    for (const e of this.logs.values()) if (e.fd !== undefined) closeSync(e.fd);
    this.logs.clear();
  }
}
