/**
 * The client's durable outbox (SQLite, WAL, synchronous=FULL). A message is written here, with
 * its envelope and the routing decision per recipient, BEFORE the SMTP 250 goes out; from then
 * on it is either delivered (every fragment ACKed by the gateway, or the smarthost took it) or
 * bounced with a reason. Per overlay recipient every fragment has a state:
 *
 *   pending  → in flight (SURB id, deadline, attempts; the SURB keys are stored alongside)
 *            → acked
 *
 * The sender prepares the next real packet ahead of its slot (client/sender.ts): the fragment
 * is then **prepared** (a row in `prepared`, the SURB's reply keys stored), durably before the
 * packet may leave, and marked in flight (attempts, deadline) after it left. A restart finds
 * every packet that was prepared and may or may not have left (`recoverPrepared`): its fragment
 * is still due and is rebuilt on a fresh route with a fresh SURB, and the old SURB's keys stay,
 * so an ACK for a copy that did leave still counts. A crash can at worst repeat a packet whose
 * ACK was still outstanding, which the gateway answers with Duplicate: nothing is delivered
 * twice, and nothing prepared is lost.
 *
 * Durability: every transaction commits under synchronous=FULL, except, with `deferFsync`, the
 * sender's own (prepare, sent, ACKed): those commit under NORMAL and the WAL is fsynced on the
 * thread pool (runtime/wal-sync.ts), so the client's event loop, which runs the send schedule,
 * never waits for the disk; a prepared packet may leave only once that fsync has completed.
 *
 * An overlay recipient accepted while no network document was usable is **held**: stored with
 * no fragments, no token and no plan (fragment_count 0) until a document verifies; then
 * `planHeld` gives it its token and fragments (or it goes by SMTP, or bounces, as the document
 * decides). Nothing is sent and no attempt counted for it meanwhile.
 *
 * Fragment data is not stored: it is recomputed from the raw message, the token and the payload
 * size recorded per recipient (splitting is deterministic).
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { privateFile } from '../runtime/private-files.ts';
import { WalSync } from '../runtime/wal-sync.ts';

export type Path = 'overlay' | 'smtp';
export type RecipientState = 'active' | 'delivered' | 'bounced';
export type FragmentState = 'pending' | 'inflight' | 'acked';

export interface NewRecipient {
  readonly address: string;
  readonly path: Path;
  readonly reason: string;
  /** overlay only: no document to plan by yet; held until one verifies (see `planHeld`) */
  readonly held?: boolean;
  /** overlay only */
  readonly domain?: string;
  readonly token?: Uint8Array;
  /** overlay only: the token's wallet row, marked spent in the same transaction */
  readonly tokenId?: number;
  readonly payloadSize?: number;
  readonly surbLength?: number;
  readonly fragmentCount?: number;
}

export interface NewMessage {
  readonly mailFrom: string;
  readonly raw: Uint8Array;
  readonly recipients: readonly NewRecipient[];
  readonly now: number;
}

export interface RecipientRow {
  readonly messageId: string;
  readonly address: string;
  readonly path: Path;
  readonly reason: string;
  readonly state: RecipientState;
  readonly domain: string | null;
  readonly token: Uint8Array | null;
  readonly wireId: Uint8Array;
  readonly payloadSize: number;
  readonly surbLength: number;
  readonly fragmentCount: number;
  readonly attempts: number;
  readonly nextAttemptAt: number;
  readonly error: string | null;
}

export interface MessageRow {
  readonly id: string;
  readonly createdAt: number;
  readonly mailFrom: string;
  readonly size: number;
  readonly state: 'active' | 'done';
}

export interface FragmentRow {
  readonly messageId: string;
  readonly address: string;
  readonly index: number;
  readonly state: FragmentState;
  readonly attempts: number;
  readonly surbId: Uint8Array | null;
  readonly deadline: number;
}

export interface SurbRow {
  readonly surbId: Uint8Array;
  readonly messageId: string;
  readonly address: string;
  readonly index: number;
  readonly keys: Uint8Array;
}

export interface Progress {
  readonly message: MessageRow;
  readonly recipients: readonly (RecipientRow & { acked: number; inflight: number })[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  mail_from TEXT NOT NULL,
  raw BLOB NOT NULL,
  size INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'active'
);
CREATE TABLE IF NOT EXISTS recipients (
  message_id TEXT NOT NULL REFERENCES messages(id),
  address TEXT NOT NULL,
  path TEXT NOT NULL,
  reason TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'active',
  domain TEXT,
  token BLOB,
  wire_id BLOB NOT NULL,
  payload_size INTEGER NOT NULL DEFAULT 0,
  surb_length INTEGER NOT NULL DEFAULT 0,
  fragment_count INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  PRIMARY KEY (message_id, address)
);
CREATE TABLE IF NOT EXISTS fragments (
  message_id TEXT NOT NULL,
  address TEXT NOT NULL,
  idx INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  surb_id BLOB,
  deadline INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (message_id, address, idx)
);
CREATE INDEX IF NOT EXISTS fragments_due ON fragments(state, deadline);
CREATE TABLE IF NOT EXISTS surbs (
  surb_id BLOB PRIMARY KEY,
  message_id TEXT NOT NULL,
  address TEXT NOT NULL,
  idx INTEGER NOT NULL,
  keys BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prepared (
  message_id TEXT NOT NULL,
  address TEXT NOT NULL,
  idx INTEGER NOT NULL,
  surb_id BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (message_id, address, idx)
);
CREATE TABLE IF NOT EXISTS tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient TEXT NOT NULL,
  key_epoch INTEGER NOT NULL,
  issuer_pk BLOB NOT NULL,
  token BLOB NOT NULL UNIQUE,
  state TEXT NOT NULL DEFAULT 'unspent',
  message_id TEXT,
  imported_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_rcpt ON tokens(recipient, state);
`;

const u8 = (b: Buffer | null | undefined): Uint8Array | null => (b ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : null);
const buf = (b: Uint8Array | null | undefined): Buffer | null => (b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : null);

interface RawRecipient {
  message_id: string;
  address: string;
  path: Path;
  reason: string;
  state: RecipientState;
  domain: string | null;
  token: Buffer | null;
  wire_id: Buffer;
  payload_size: number;
  surb_length: number;
  fragment_count: number;
  attempts: number;
  next_attempt_at: number;
  error: string | null;
}

function recipientRow(r: RawRecipient): RecipientRow {
  return {
    messageId: r.message_id,
    address: r.address,
    path: r.path,
    reason: r.reason,
    state: r.state,
    domain: r.domain,
    token: u8(r.token),
    wireId: u8(r.wire_id)!,
    payloadSize: r.payload_size,
    surbLength: r.surb_length,
    fragmentCount: r.fragment_count,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    error: r.error,
  };
}

interface RawFragment {
  message_id: string;
  address: string;
  idx: number;
  state: FragmentState;
  attempts: number;
  surb_id: Buffer | null;
  deadline: number;
}

function fragmentRow(f: RawFragment): FragmentRow {
  return {
    messageId: f.message_id,
    address: f.address,
    index: f.idx,
    state: f.state,
    attempts: f.attempts,
    surbId: u8(f.surb_id),
    deadline: f.deadline,
  };
}

/** The wallet token `accept` was to spend was spent meanwhile (another session took it): pick another. */
export class TokenSpentError extends Error {
  override readonly name = 'TokenSpentError';
  constructor(
    readonly tokenId: number,
    readonly recipient: string,
  ) {
    super(`token ${tokenId} for ${recipient} is no longer unspent`);
  }
}

export interface OutboxOptions {
  /**
   * The sender's transactions (`prepareFragment`, `markSent`, `markAcked`, …) commit under
   * synchronous=NORMAL and their `durable` callbacks run once an fsync of the WAL on the thread
   * pool has completed; without it (tests on a fake clock) they commit under FULL and `durable`
   * runs before the call returns.
   */
  readonly deferFsync?: boolean;
}

/** A prepared fragment's packet that left: in flight with `surbId`, due again at `deadline` unless ACKed. */
export interface SentRecord {
  readonly messageId: string;
  readonly address: string;
  readonly index: number;
  readonly surbId: Uint8Array;
  readonly deadline: number;
}

/** A fragment prepared by an earlier run, whose packet may or may not have left before it stopped. */
export interface PreparedRow {
  readonly messageId: string;
  readonly address: string;
  readonly index: number;
  readonly surbId: Uint8Array;
}

export class Outbox {
  readonly db: Database.Database;
  /** fsyncs the WAL after the sender's deferred commits (runtime/wal-sync.ts) */
  readonly wal: WalSync;
  private readonly deferFsync: boolean;

  constructor(
    readonly path: string,
    opts: OutboxOptions = {},
  ) {
    // messages, SURB reply keys and the token wallet: readable by this user only (the daemon
    // also tightens data_dir itself; a directory someone else chose is left as it is)
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      privateFile(path);
    }
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
    this.wal = new WalSync(path);
    this.deferFsync = opts.deferFsync === true;
  }

  close(): void {
    if (this.db.open) {
      // what the deferred commits left in the page cache goes to disk before the file closes
      if (this.deferFsync) this.wal.syncNow();
      this.db.close();
    }
    this.wal.close();
  }

  /**
   * One of the sender's transactions: under FULL (durable when it returns), or with
   * `deferFsync` under NORMAL, the WAL then fsynced off the event loop. `durable` runs when what
   * `fn` wrote is on disk (with the error if the fsync failed: then it may not be).
   */
  private senderTx<T>(fn: () => T, durable?: (err: Error | null) => void): T {
    if (!this.deferFsync) {
      const r = this.db.transaction(fn).immediate();
      durable?.(null);
      return r;
    }
    this.db.pragma('synchronous = NORMAL');
    let r: T;
    try {
      r = this.db.transaction(fn).immediate();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
    this.wal.sync((err) => durable?.(err));
    return r;
  }

  /**
   * Stores a message durably (one transaction): the raw bytes, the envelope, each recipient's
   * path and reason, its fragments (pending) and the wallet token it spends. Returns the id.
   * Call this before answering 250.
   */
  accept(m: NewMessage): string {
    const id = randomBytes(8).toString('hex');
    const tx = this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO messages (id, created_at, mail_from, raw, size) VALUES (?, ?, ?, ?, ?)')
        .run(id, m.now, m.mailFrom, buf(m.raw), m.raw.length);
      const insR = this.db.prepare(
        `INSERT INTO recipients (message_id, address, path, reason, domain, token, wire_id, payload_size, surb_length, fragment_count)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const insF = this.db.prepare('INSERT INTO fragments (message_id, address, idx) VALUES (?, ?, ?)');
      const spend = this.db.prepare("UPDATE tokens SET state = 'spent', message_id = ? WHERE id = ? AND state = 'unspent'");
      for (const r of m.recipients) {
        if (r.path === 'overlay' && r.held) {
          insR.run(id, r.address, r.path, r.reason, r.domain ?? null, null, randomBytes(16), 0, 0, 0);
        } else if (r.path === 'overlay') {
          const n = r.fragmentCount ?? 0;
          if (n < 1) throw new Error(`overlay recipient ${r.address} has no fragments`);
          insR.run(
            id,
            r.address,
            r.path,
            r.reason,
            r.domain ?? null,
            buf(r.token ?? new Uint8Array(0)),
            randomBytes(16),
            r.payloadSize ?? 0,
            r.surbLength ?? 0,
            n,
          );
          for (let i = 0; i < n; i++) insF.run(id, r.address, i);
          if (r.tokenId !== undefined && spend.run(id, r.tokenId).changes !== 1) throw new TokenSpentError(r.tokenId, r.address);
        } else {
          insR.run(id, r.address, r.path, r.reason, null, null, randomBytes(16), 0, 0, 0);
        }
      }
    });
    tx.immediate();
    return id;
  }

  message(id: string): MessageRow | undefined {
    const r = this.db.prepare('SELECT id, created_at, mail_from, size, state FROM messages WHERE id = ?').get(id) as
      { id: string; created_at: number; mail_from: string; size: number; state: 'active' | 'done' } | undefined;
    return r && { id: r.id, createdAt: r.created_at, mailFrom: r.mail_from, size: r.size, state: r.state };
  }

  raw(id: string): Uint8Array {
    const r = this.db.prepare('SELECT raw FROM messages WHERE id = ?').get(id) as { raw: Buffer } | undefined;
    if (!r) throw new Error(`no message ${id}`);
    return u8(r.raw)!;
  }

  recipients(messageId: string): RecipientRow[] {
    return (this.db.prepare('SELECT * FROM recipients WHERE message_id = ? ORDER BY address').all(messageId) as RawRecipient[]).map(recipientRow);
  }

  recipient(messageId: string, address: string): RecipientRow | undefined {
    const r = this.db.prepare('SELECT * FROM recipients WHERE message_id = ? AND address = ?').get(messageId, address) as RawRecipient | undefined;
    return r && recipientRow(r);
  }

  fragments(messageId: string, address: string): FragmentRow[] {
    return (this.db.prepare('SELECT * FROM fragments WHERE message_id = ? AND address = ? ORDER BY idx').all(messageId, address) as RawFragment[]).map(
      fragmentRow,
    );
  }

  /** Active messages, oldest first. */
  activeMessages(): MessageRow[] {
    return (
      this.db.prepare("SELECT id, created_at, mail_from, size, state FROM messages WHERE state = 'active' ORDER BY created_at, rowid").all() as {
        id: string;
        created_at: number;
        mail_from: string;
        size: number;
        state: 'active';
      }[]
    ).map((r) => ({ id: r.id, createdAt: r.created_at, mailFrom: r.mail_from, size: r.size, state: r.state }));
  }

  /** Overlay recipients held for a network document (no plan yet), oldest first. */
  heldRecipients(limit = 64): RecipientRow[] {
    return (
      this.db
        .prepare(
          `SELECT r.* FROM recipients r JOIN messages m ON m.id = r.message_id
           WHERE r.path = 'overlay' AND r.state = 'active' AND r.fragment_count = 0
           ORDER BY m.created_at, m.rowid LIMIT ?`,
        )
        .all(limit) as RawRecipient[]
    ).map(recipientRow);
  }

  /**
   * Plans a held recipient now that a document is usable (one transaction): its token (spent
   * here), payload size, SURB length and pending fragments, or the SMTP path. False when it is
   * no longer held.
   */
  planHeld(messageId: string, address: string, plan: Omit<NewRecipient, 'address' | 'held'>): boolean {
    let done = false;
    const tx = this.db.transaction(() => {
      const r = this.db
        .prepare("SELECT fragment_count FROM recipients WHERE message_id = ? AND address = ? AND state = 'active' AND path = 'overlay'")
        .get(messageId, address) as { fragment_count: number } | undefined;
      if (!r || r.fragment_count !== 0) return;
      if (plan.path === 'smtp') {
        this.db
          .prepare("UPDATE recipients SET path = 'smtp', reason = ?, domain = NULL, next_attempt_at = 0 WHERE message_id = ? AND address = ?")
          .run(plan.reason, messageId, address);
      } else {
        const n = plan.fragmentCount ?? 0;
        if (n < 1) throw new Error(`overlay recipient ${address} has no fragments`);
        this.db
          .prepare(
            'UPDATE recipients SET reason = ?, domain = ?, token = ?, payload_size = ?, surb_length = ?, fragment_count = ? WHERE message_id = ? AND address = ?',
          )
          .run(plan.reason, plan.domain ?? null, buf(plan.token ?? new Uint8Array(0)), plan.payloadSize ?? 0, plan.surbLength ?? 0, n, messageId, address);
        const insF = this.db.prepare('INSERT INTO fragments (message_id, address, idx) VALUES (?, ?, ?)');
        for (let i = 0; i < n; i++) insF.run(messageId, address, i);
        if (
          plan.tokenId !== undefined &&
          this.db.prepare("UPDATE tokens SET state = 'spent', message_id = ? WHERE id = ? AND state = 'unspent'").run(messageId, plan.tokenId).changes !== 1
        )
          throw new TokenSpentError(plan.tokenId, address);
      }
      done = true;
    });
    tx.immediate();
    return done;
  }

  /** SMTP-fallback recipients whose next attempt is due. */
  dueSmtp(now: number, limit = 16): RecipientRow[] {
    return (
      this.db
        .prepare("SELECT * FROM recipients WHERE path = 'smtp' AND state = 'active' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?")
        .all(now, limit) as RawRecipient[]
    ).map(recipientRow);
  }

  /**
   * The next overlay fragment to send: a pending one (oldest message first), else an in-flight
   * one whose ACK deadline has passed. Only recipients still active and not backing off, and
   * not a fragment whose packet is prepared already.
   */
  nextDueFragment(now: number): FragmentRow | undefined {
    const f = this.db
      .prepare(
        `SELECT f.* FROM fragments f JOIN recipients r ON r.message_id = f.message_id AND r.address = f.address
         JOIN messages m ON m.id = f.message_id
         WHERE r.state = 'active' AND r.next_attempt_at <= ?
           AND (f.state = 'pending' OR (f.state = 'inflight' AND f.deadline <= ?))
           AND NOT EXISTS (SELECT 1 FROM prepared p WHERE p.message_id = f.message_id AND p.address = f.address AND p.idx = f.idx)
         ORDER BY (f.state = 'inflight'), f.deadline, m.created_at, m.rowid, f.idx LIMIT 1`,
      )
      .get(now, now) as RawFragment | undefined;
    return f && fragmentRow(f);
  }

  /** Count of fragments that are due now (the real-packet queue length of the payload stream). */
  dueCount(now: number): number {
    const r = this.db
      .prepare(
        `SELECT COUNT(*) AS n FROM fragments f JOIN recipients r ON r.message_id = f.message_id AND r.address = f.address
         WHERE r.state = 'active' AND r.next_attempt_at <= ? AND (f.state = 'pending' OR (f.state = 'inflight' AND f.deadline <= ?))`,
      )
      .get(now, now) as { n: number };
    return r.n;
  }

  /**
   * Durably records that fragment (messageId, address, index) goes out now with SURB `surbId`,
   * whose reply keys are `keys`, and must be ACKed by `deadline`. The previous SURB of this
   * fragment stays valid (a late ACK for it still counts) until the fragment is acked. (The
   * sender prepares ahead instead: `prepareFragment`, then `markSent`.)
   */
  markInFlight(messageId: string, address: string, index: number, surbId: Uint8Array, keys: Uint8Array, deadline: number, now: number): void {
    const tx = this.db.transaction(() => {
      this.insertSurb(messageId, address, index, surbId, keys, now);
      this.setInFlight(messageId, address, index, surbId, deadline);
    });
    tx.immediate();
  }

  /**
   * Records that the packet for fragment (messageId, address, index) is built and waits for its
   * slot: with SURB `surbId`, whose reply keys are `keys`. The fragment is not offered again
   * (`nextDueFragment`) while it is prepared. `durable` runs once this is on disk; the packet
   * must not leave before, or a crash could forget the keys of a SURB already out.
   */
  prepareFragment(
    messageId: string,
    address: string,
    index: number,
    surbId: Uint8Array,
    keys: Uint8Array,
    now: number,
    durable: (err: Error | null) => void,
    sent: readonly SentRecord[] = [],
  ): void {
    this.senderTx(() => {
      // the packets that left in this step (`markSent`), in the same commit
      this.recordSent(sent);
      const f = this.db.prepare("SELECT 1 FROM fragments WHERE message_id = ? AND address = ? AND idx = ? AND state != 'acked'").get(messageId, address, index);
      if (!f) throw new Error('fragment is already acked or unknown');
      this.db
        .prepare('INSERT INTO prepared (message_id, address, idx, surb_id, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(messageId, address, index, buf(surbId), now);
      this.insertSurb(messageId, address, index, surbId, keys, now);
    }, durable);
  }

  /**
   * The prepared packets that left (one transaction): each fragment is in flight with its SURB,
   * one more attempt, and its ACK deadline, and no longer prepared. Not waited for: if a crash
   * loses this, the restart finds the fragments prepared and sends them again (`recoverPrepared`).
   */
  markSent(sent: readonly SentRecord[]): void {
    if (sent.length > 0) this.senderTx(() => this.recordSent(sent));
  }

  private recordSent(sent: readonly SentRecord[]): void {
    for (const s of sent) {
      this.db.prepare('DELETE FROM prepared WHERE message_id = ? AND address = ? AND idx = ?').run(s.messageId, s.address, s.index);
      // a fragment ACKed meanwhile (by an earlier copy's SURB) stays acked
      this.db
        .prepare(
          "UPDATE fragments SET state = 'inflight', attempts = attempts + 1, surb_id = ?, deadline = ? WHERE message_id = ? AND address = ? AND idx = ? AND state != 'acked'",
        )
        .run(buf(s.surbId), s.deadline, s.messageId, s.address, s.index);
    }
  }

  /** A prepared packet that will not leave (its keys expired, its recipient backs off): forgets it and its SURB. */
  unprepare(messageId: string, address: string, index: number, surbId: Uint8Array): void {
    this.senderTx(() => {
      this.db.prepare('DELETE FROM prepared WHERE message_id = ? AND address = ? AND idx = ? AND surb_id = ?').run(messageId, address, index, buf(surbId));
      this.db.prepare('DELETE FROM surbs WHERE surb_id = ?').run(buf(surbId));
    });
  }

  /**
   * At the sender's start: the fragments an earlier run prepared and did not record as sent. Each
   * packet may have left (the run stopped after the send, before `markSent`) or not; the rows go,
   * so the fragments are due again and are rebuilt, and their SURBs stay, so that an ACK for a
   * copy that did leave still counts. At most one extra copy each, which the gateway answers with
   * Duplicate and never delivers twice.
   */
  recoverPrepared(): PreparedRow[] {
    let rows: PreparedRow[] = [];
    this.db
      .transaction(() => {
        rows = (
          this.db.prepare('SELECT message_id, address, idx, surb_id FROM prepared').all() as {
            message_id: string;
            address: string;
            idx: number;
            surb_id: Buffer;
          }[]
        ).map((r) => ({ messageId: r.message_id, address: r.address, index: r.idx, surbId: u8(r.surb_id)! }));
        this.db.prepare('DELETE FROM prepared').run();
      })
      .immediate();
    return rows;
  }

  /** The prepared fragments (tests, status). */
  prepared(): PreparedRow[] {
    return (
      this.db.prepare('SELECT message_id, address, idx, surb_id FROM prepared').all() as { message_id: string; address: string; idx: number; surb_id: Buffer }[]
    ).map((r) => ({ messageId: r.message_id, address: r.address, index: r.idx, surbId: u8(r.surb_id)! }));
  }

  private insertSurb(messageId: string, address: string, index: number, surbId: Uint8Array, keys: Uint8Array, now: number): void {
    this.db
      .prepare('INSERT INTO surbs (surb_id, message_id, address, idx, keys, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(buf(surbId), messageId, address, index, buf(keys), now);
  }

  private setInFlight(messageId: string, address: string, index: number, surbId: Uint8Array, deadline: number): void {
    const ch = this.db
      .prepare(
        "UPDATE fragments SET state = 'inflight', attempts = attempts + 1, surb_id = ?, deadline = ? WHERE message_id = ? AND address = ? AND idx = ? AND state != 'acked'",
      )
      .run(buf(surbId), deadline, messageId, address, index);
    if (ch.changes !== 1) throw new Error('fragment is already acked or unknown');
  }

  surb(surbId: Uint8Array): SurbRow | undefined {
    const r = this.db.prepare('SELECT * FROM surbs WHERE surb_id = ?').get(buf(surbId)) as
      { surb_id: Buffer; message_id: string; address: string; idx: number; keys: Buffer } | undefined;
    return r && { surbId: u8(r.surb_id)!, messageId: r.message_id, address: r.address, index: r.idx, keys: u8(r.keys)! };
  }

  /**
   * Records an ACK. Returns true when this completed the recipient (every fragment acked):
   * the recipient is then delivered, and the message done when no recipient is active.
   */
  markAcked(messageId: string, address: string, index: number): boolean {
    let completed = false;
    // not waited for: an ACK a crash loses makes the fragment go once more, and come back Duplicate
    this.senderTx(() => {
      this.db.prepare("UPDATE fragments SET state = 'acked' WHERE message_id = ? AND address = ? AND idx = ?").run(messageId, address, index);
      this.db.prepare('DELETE FROM surbs WHERE message_id = ? AND address = ? AND idx = ?').run(messageId, address, index);
      this.db.prepare('DELETE FROM prepared WHERE message_id = ? AND address = ? AND idx = ?').run(messageId, address, index);
      const left = this.db.prepare("SELECT COUNT(*) AS n FROM fragments WHERE message_id = ? AND address = ? AND state != 'acked'").get(messageId, address) as {
        n: number;
      };
      const r = this.db.prepare('SELECT state FROM recipients WHERE message_id = ? AND address = ?').get(messageId, address) as { state: string } | undefined;
      if (left.n === 0 && r?.state === 'active') {
        this.db.prepare("UPDATE recipients SET state = 'delivered' WHERE message_id = ? AND address = ?").run(messageId, address);
        completed = true;
        this.finishIfDone(messageId);
      }
    });
    return completed;
  }

  /** Drops a SURB whose reply was used or is useless. */
  forgetSurb(surbId: Uint8Array): void {
    this.senderTx(() => this.db.prepare('DELETE FROM surbs WHERE surb_id = ?').run(buf(surbId)));
  }

  /** Puts an overlay recipient on hold until `until` (rate limited by the gateway). */
  backOff(messageId: string, address: string, until: number, note: string): void {
    this.db.prepare('UPDATE recipients SET next_attempt_at = ?, error = ? WHERE message_id = ? AND address = ?').run(until, note, messageId, address);
  }

  /** SMTP attempt bookkeeping: a temporary failure, retry at `next`. */
  smtpDeferred(messageId: string, address: string, next: number, error: string): void {
    this.db
      .prepare('UPDATE recipients SET attempts = attempts + 1, next_attempt_at = ?, error = ? WHERE message_id = ? AND address = ?')
      .run(next, error, messageId, address);
  }

  /** Makes every deferred SMTP-fallback recipient due now (at start-up: a restart often follows a fix). */
  retrySmtpNow(now: number): number {
    return this.db.prepare("UPDATE recipients SET next_attempt_at = ? WHERE path = 'smtp' AND state = 'active' AND next_attempt_at > ?").run(now, now).changes;
  }

  markDelivered(messageId: string, address: string): void {
    const tx = this.db.transaction(() => {
      this.db
        .prepare("UPDATE recipients SET state = 'delivered', attempts = attempts + 1, error = NULL WHERE message_id = ? AND address = ?")
        .run(messageId, address);
      this.finishIfDone(messageId);
    });
    tx.immediate();
  }

  /** Gives up on a recipient with `reason` (the caller writes the bounce). Returns false if it was not active. */
  markBounced(messageId: string, address: string, reason: string): boolean {
    let changed = false;
    const tx = this.db.transaction(() => {
      changed =
        this.db
          .prepare("UPDATE recipients SET state = 'bounced', error = ? WHERE message_id = ? AND address = ? AND state = 'active'")
          .run(reason, messageId, address).changes === 1;
      if (changed) {
        this.db.prepare('DELETE FROM surbs WHERE message_id = ? AND address = ?').run(messageId, address);
        this.db.prepare('DELETE FROM prepared WHERE message_id = ? AND address = ?').run(messageId, address);
        this.finishIfDone(messageId);
      }
    });
    tx.immediate();
    return changed;
  }

  private finishIfDone(messageId: string): void {
    const left = this.db.prepare("SELECT COUNT(*) AS n FROM recipients WHERE message_id = ? AND state = 'active'").get(messageId) as { n: number };
    if (left.n > 0) return;
    // a fully delivered message's bytes are no longer needed; a bounced one keeps them (the bounce quotes its headers)
    const bounced = this.db.prepare("SELECT COUNT(*) AS n FROM recipients WHERE message_id = ? AND state = 'bounced'").get(messageId) as { n: number };
    this.db.prepare(`UPDATE messages SET state = 'done'${bounced.n === 0 ? ", raw = X''" : ''} WHERE id = ?`).run(messageId);
  }

  /** Every active message with per-recipient fragment counts (for `postmix client status`). */
  progress(includeDone = false): Progress[] {
    const msgs = includeDone
      ? (this.db.prepare('SELECT id FROM messages ORDER BY created_at, rowid').all() as { id: string }[]).map((r) => this.message(r.id)!)
      : this.activeMessages();
    const cnt = this.db.prepare(
      "SELECT SUM(state = 'acked') AS acked, SUM(state = 'inflight') AS inflight FROM fragments WHERE message_id = ? AND address = ?",
    );
    return msgs.map((message) => ({
      message,
      recipients: this.recipients(message.id).map((r) => {
        const c = cnt.get(message.id, r.address) as { acked: number | null; inflight: number | null };
        return { ...r, acked: c.acked ?? 0, inflight: c.inflight ?? 0 };
      }),
    }));
  }
}
