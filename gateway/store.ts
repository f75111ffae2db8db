/**
 * The gateway's one SQLite database (better-sqlite3, WAL, synchronous=FULL: a commit is on disk
 * before the call returns, so an ACK sent after a commit is never for state a crash can lose).
 *
 * Tables:
 * - users: recipient address → per-user secret hash (SHA-256 of a 32-byte random secret),
 *   the highest token key epoch it ever had, policy ('tokens' | 'open'), open-policy rate
 *   limit per hour, its own rotation policy (null: the gateway's);
 * - key_epochs: a recipient's key epochs (number, window, grace, revoked, tokens issued), on
 *   the schedule gateway/key-epochs.ts plans. Nothing from issuance is stored but the count;
 * - spent: token spend key (a hash of its input, proto/tokens `tokenSpendKey`; never the input)
 *   → the message id and recipient it is bound to, its key epoch, and whether that message was
 *   completed (`done`: from then on the token admits nothing, whatever happens to the queue
 *   row). Rows live until their key epoch stops verifying (revoked, or past its end + grace;
 *   `purgeOldSpent`), so the set holds at most the tokens issued in a recipient's live epochs
 *   (previous in grace, current, next), each capped per epoch at issuance;
 * - partial + fragments: reassembly state (first-fragment header with a digest of its token
 *   bytes, first-seen time, expiry);
 * - queue: complete messages for the MX (state queued | sending | delivered | failed, attempts,
 *   next attempt time); a delivered row keeps its id (body cleared) for dedupe;
 * - rate: open-policy message counts per recipient and hour window;
 * - mailbox: items waiting for clients (bounded per mailbox, with a TTL).
 *
 * All methods are synchronous; the intake runs each fragment in one transaction.
 *
 * Reads within one transaction: inside a transaction (`tx` at the top level, or `batch`) the
 * rows the intake reads for every fragment (the user, its key epochs, the spent set, the partial
 * message) are kept for the rest of that transaction and written through by this store's own
 * writes (`TxReads`), so the fragments of a batch that share a recipient, a token or a message
 * read each row once. Reads inside one transaction are consistent (one connection, BEGIN
 * IMMEDIATE), so this changes no answer; the rows are forgotten when the transaction ends, is
 * rolled back, or a method that writes users or key epochs runs, so anything committed between
 * two transactions (a revocation, a new policy) is seen by the next one.
 */
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { privateFile } from '../runtime/private-files.ts';
import { WalSync } from '../runtime/wal-sync.ts';
import { fragmentTokenDigest, normalizeRecipient, tokenSpendKey, type KeyEpochWindow } from '../proto/tokens/index.ts';
import { acceptsAt, currentEpoch, isDead, nextEpoch, planEpochs, revokeAll, DEFAULT_ROTATION, type EpochRow, type RotationPolicy } from './key-epochs.ts';
import { bytesEqual, hex } from '../proto/util/bytes.ts';

export type Policy = 'tokens' | 'open';
export type QueueState = 'queued' | 'sending' | 'delivered' | 'failed';

export interface UserRow {
  readonly address: string;
  /** The highest key epoch number it ever had (the windows are in `schedule`). */
  readonly highestKeyEpoch: number;
  readonly policy: Policy;
  /** Open policy: new messages per hour accepted for this recipient. */
  readonly ratePerHour: number;
  /** Its own rotation policy; null: the gateway's. */
  readonly rotationS: number | null;
  readonly graceS: number | null;
}

/** A recipient's key epochs at a time: the current one, the next once scheduled, and the policy that made them. */
export interface Schedule {
  readonly current: EpochRow;
  readonly next: EpochRow | undefined;
  readonly policy: RotationPolicy;
}

export interface PartialRow {
  readonly messageId: Buffer;
  readonly recipient: string;
  readonly count: number;
  readonly totalLength: number;
  /** fragmentTokenDigest of the first fragment's token bytes */
  readonly tokenDigest: Buffer;
  readonly firstSeen: number;
  readonly expires: number;
  readonly received: number;
  readonly bytes: number;
}

export interface SpentRow {
  readonly messageId: Buffer;
  readonly recipient: string;
  /** the message was completed (queued for the MX) */
  readonly done: boolean;
}

export interface QueueRow {
  readonly messageId: Buffer;
  readonly handoffId: string;
  readonly recipient: string;
  readonly body: Buffer | null;
  readonly size: number;
  readonly state: QueueState;
  readonly attempts: number;
  readonly nextAttempt: number;
  readonly created: number;
  readonly lastError: string | null;
  readonly deliveredAt: number | null;
}

/**
 * Rows read in the current transaction (null: read, and absent), written through by the store's
 * own writes; see the top of this file. Keys: users by the address as asked, epochs by address
 * then number, spent rows by token key, partials by message id (latin1).
 */
interface TxReads {
  readonly users: Map<string, UserRow | null>;
  readonly epochs: Map<string, Map<number, EpochRow | null>>;
  readonly spent: Map<string, SpentRow | null>;
  readonly partials: Map<string, PartialRow | null>;
}

const newReads = (): TxReads => ({ users: new Map(), epochs: new Map(), spent: new Map(), partials: new Map() });

/** A message id as a map key (one char per byte). */
const idKey = (id: Uint8Array): string => String.fromCharCode.apply(null, id as unknown as number[]);

export interface StoreOptions {
  /** 'full' (default) fsyncs every commit; 'normal' survives a process crash, not power loss (benchmarks). */
  readonly synchronous?: 'full' | 'normal';
  /** The gateway's key-epoch rotation (config [tokens]); users without their own follow it. */
  readonly rotation?: RotationPolicy;
}

type RawUser = { address: string; key_epoch: number; policy: Policy; rate_per_hour: number; rotation_s: number | null; grace_s: number | null };
const userRow = (r: RawUser): UserRow => ({
  address: r.address,
  highestKeyEpoch: r.key_epoch,
  policy: r.policy,
  ratePerHour: r.rate_per_hour,
  rotationS: r.rotation_s,
  graceS: r.grace_s,
});
type RawEpoch = { key_epoch: number; starts: number; ends: number | null; grace_s: number; revoked: number };
const epochRow = (r: RawEpoch): EpochRow => ({ keyEpoch: r.key_epoch, starts: r.starts, ends: r.ends, graceS: r.grace_s, revoked: r.revoked !== 0 });

/** The window of an epoch row, as the issuance endpoint and bundles show it. */
export const windowOf = (r: EpochRow): KeyEpochWindow => ({ keyEpoch: r.keyEpoch, starts: r.starts, ends: r.ends });

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  address TEXT PRIMARY KEY,
  secret_hash BLOB NOT NULL,
  key_epoch INTEGER NOT NULL, -- the highest key epoch it ever had (key_epochs holds the windows)
  policy TEXT NOT NULL CHECK (policy IN ('tokens','open')),
  rate_per_hour INTEGER NOT NULL,
  created INTEGER NOT NULL,
  rotation_s INTEGER, -- NULL: the gateway's [tokens] rotation_s
  grace_s INTEGER     -- NULL: the gateway's [tokens] grace_s
);
CREATE TABLE IF NOT EXISTS key_epochs (
  address TEXT NOT NULL,
  key_epoch INTEGER NOT NULL,
  starts INTEGER NOT NULL, -- unix seconds
  ends INTEGER,            -- NULL: no scheduled end
  grace_s INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  issued INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (address, key_epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spent (
  token_key TEXT PRIMARY KEY,
  message_id BLOB NOT NULL,
  recipient TEXT NOT NULL,
  key_epoch INTEGER NOT NULL,
  spent_at INTEGER NOT NULL,
  done INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partial (
  message_id BLOB PRIMARY KEY,
  recipient TEXT NOT NULL,
  count INTEGER NOT NULL,
  total_length INTEGER NOT NULL,
  token BLOB NOT NULL, -- fragmentTokenDigest of the token bytes, not the token
  first_seen INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  received INTEGER NOT NULL,
  bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS partial_expires ON partial(expires);
CREATE TABLE IF NOT EXISTS fragments ( -- a rowid table: see migrateToV4
  message_id BLOB NOT NULL,
  idx INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (message_id, idx)
);
CREATE TABLE IF NOT EXISTS queue (
  message_id BLOB PRIMARY KEY,
  queue_id TEXT NOT NULL UNIQUE,
  recipient TEXT NOT NULL,
  body BLOB,
  size INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued','sending','delivered','failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt INTEGER NOT NULL,
  created INTEGER NOT NULL,
  last_error TEXT,
  delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS queue_due ON queue(state, next_attempt);
CREATE TABLE IF NOT EXISTS rate (
  recipient TEXT NOT NULL,
  window INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (recipient, window)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  mailbox BLOB NOT NULL,
  surb_id BLOB NOT NULL,
  payload BLOB NOT NULL,
  expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mailbox_by_id ON mailbox(mailbox, seq);
CREATE INDEX IF NOT EXISTS mailbox_expires ON mailbox(expires);
`;

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update('postmix-gateway-user-secret-v1|').update(secret, 'utf8').digest();
}

/** The stable queue id a message is handed to the MX under (and the MX may dedupe on). */
export function handoffIdOf(messageId: Uint8Array): string {
  return 'postmix-' + hex(messageId);
}

const b = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

type RawQueue = {
  message_id: Buffer;
  queue_id: string;
  recipient: string;
  body: Buffer | null;
  size: number;
  state: QueueState;
  attempts: number;
  next_attempt: number;
  created: number;
  last_error: string | null;
  delivered_at: number | null;
};

function queueRow(r: RawQueue): QueueRow {
  return {
    messageId: r.message_id,
    handoffId: r.queue_id,
    recipient: r.recipient,
    body: r.body,
    size: r.size,
    state: r.state,
    attempts: r.attempts,
    nextAttempt: r.next_attempt,
    created: r.created,
    lastError: r.last_error,
    deliveredAt: r.delivered_at,
  };
}

/** The newest schema this build writes (PRAGMA user_version); migrate() brings older ones to it. */
const SCHEMA_VERSION = 4;

export class GatewayStore {
  readonly db: Database.Database;
  readonly rotation: RotationPolicy;
  private readonly st;
  private readonly txRunner: Database.Transaction<(fn: () => unknown) => unknown>;
  private inBatch = false;
  /** Rows read in the current top-level transaction or batch (undefined outside one). */
  private reads: TxReads | undefined;
  private readonly fullSync: boolean;
  /** PRAGMA synchronous = NORMAL / FULL around a deferFsync batch, prepared once (db.pragma() prepares per call) */
  private readonly syncPragma: { readonly normal: Database.Statement; readonly full: Database.Statement };
  /** fsyncs the WAL for batches committed with `deferFsync` (runtime/wal-sync.ts) */
  readonly wal: WalSync;

  constructor(
    readonly path: string,
    opts: StoreOptions = {},
  ) {
    this.rotation = opts.rotation ?? DEFAULT_ROTATION;
    // message bodies, user secret hashes, the spent set: readable by the gateway's user only (the
    // daemon also tightens data_dir itself; a directory someone else chose is left as it is)
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      privateFile(path);
    }
    this.db = new Database(path);
    // a database a newer build migrated: this build's statements may not fit its tables, and a
    // write could damage what that build relies on, so it is refused before anything is written
    const found = this.db.pragma('user_version', { simple: true }) as number;
    if (found > SCHEMA_VERSION) {
      this.db.close();
      throw new Error(
        `${path}: the gateway database has schema version ${found}, newer than this build's ${SCHEMA_VERSION}; run the postmix version that wrote it (or a later one)`,
      );
    }
    this.db.pragma('journal_mode = WAL');
    this.fullSync = opts.synchronous !== 'normal';
    this.db.pragma(`synchronous = ${this.fullSync ? 'FULL' : 'NORMAL'}`);
    this.wal = new WalSync(path);
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.txRunner = this.db.transaction((fn: () => unknown) => fn());
    this.syncPragma = { normal: this.db.prepare('PRAGMA synchronous = NORMAL'), full: this.db.prepare('PRAGMA synchronous = FULL') };
    this.migrate();
    const d = this.db;
    this.st = {
      getUser: d.prepare<[string], RawUser>('SELECT address, key_epoch, policy, rate_per_hour, rotation_s, grace_s FROM users WHERE address = ?'),
      epochGet: d.prepare<[string, number], RawEpoch>('SELECT key_epoch, starts, ends, grace_s, revoked FROM key_epochs WHERE address = ? AND key_epoch = ?'),
      epochsOf: d.prepare<[string], RawEpoch>('SELECT key_epoch, starts, ends, grace_s, revoked FROM key_epochs WHERE address = ? ORDER BY key_epoch'),
      userSecret: d.prepare<[string], { secret_hash: Buffer }>('SELECT secret_hash FROM users WHERE address = ?'),
      spentGet: d.prepare<[string], { message_id: Buffer; recipient: string; done: number }>(
        'SELECT message_id, recipient, done FROM spent WHERE token_key = ?',
      ),
      spentDone: d.prepare<[string]>('UPDATE spent SET done = 1 WHERE token_key = ?'),
      spentPut: d.prepare<[string, Buffer, string, number, number]>(
        'INSERT OR IGNORE INTO spent (token_key, message_id, recipient, key_epoch, spent_at) VALUES (?,?,?,?,?)',
      ),
      partialGet: d.prepare<[Buffer], Record<string, unknown>>('SELECT * FROM partial WHERE message_id = ?'),
      partialPut: d.prepare<[Buffer, string, number, number, Buffer, number, number]>(
        'INSERT INTO partial (message_id, recipient, count, total_length, token, first_seen, expires, received, bytes) VALUES (?,?,?,?,?,?,?,0,0)',
      ),
      partialBump: d.prepare<[number, Buffer]>('UPDATE partial SET received = received + 1, bytes = bytes + ? WHERE message_id = ?'),
      partialDel: d.prepare<[Buffer]>('DELETE FROM partial WHERE message_id = ?'),
      fragPut: d.prepare<[Buffer, number, Buffer]>('INSERT OR IGNORE INTO fragments (message_id, idx, data) VALUES (?,?,?)'),
      fragAll: d.prepare<[Buffer], { idx: number; data: Buffer }>('SELECT idx, data FROM fragments WHERE message_id = ? ORDER BY idx'),
      fragHas: d.prepare<[Buffer, number], { 1: number }>('SELECT 1 FROM fragments WHERE message_id = ? AND idx = ?'),
      fragDel: d.prepare<[Buffer]>('DELETE FROM fragments WHERE message_id = ?'),
      fragDelOne: d.prepare<[Buffer, number]>('DELETE FROM fragments WHERE message_id = ? AND idx = ?'),
      queueGet: d.prepare<[Buffer], RawQueue>('SELECT * FROM queue WHERE message_id = ?'),
      queueGetById: d.prepare<[string], RawQueue>('SELECT * FROM queue WHERE queue_id = ?'),
      queuePut: d.prepare<[Buffer, string, string, Buffer, number, number, number]>(
        "INSERT INTO queue (message_id, queue_id, recipient, body, size, state, attempts, next_attempt, created) VALUES (?,?,?,?,?,'queued',0,?,?)",
      ),
      queueDue: d.prepare<[number, number], RawQueue>("SELECT * FROM queue WHERE state = 'queued' AND next_attempt <= ? ORDER BY next_attempt LIMIT ?"),
      queueNextDue: d.prepare<[], { t: number | null }>("SELECT MIN(next_attempt) AS t FROM queue WHERE state = 'queued'"),
      queueClaim: d.prepare<[string]>("UPDATE queue SET state = 'sending', attempts = attempts + 1 WHERE queue_id = ? AND state = 'queued'"),
      queueDelivered: d.prepare<[number, string]>("UPDATE queue SET state = 'delivered', body = NULL, delivered_at = ?, last_error = NULL WHERE queue_id = ?"),
      queueRetryLater: d.prepare<[number, string, string]>("UPDATE queue SET state = 'queued', next_attempt = ?, last_error = ? WHERE queue_id = ?"),
      queueFailed: d.prepare<[string, string]>("UPDATE queue SET state = 'failed', last_error = ? WHERE queue_id = ?"),
      queueDepth: d.prepare<[], { state: QueueState; n: number }>('SELECT state, COUNT(*) AS n FROM queue GROUP BY state'),
      rateGet: d.prepare<[string, number], { count: number }>('SELECT count FROM rate WHERE recipient = ? AND window = ?'),
      rateBump: d.prepare<[string, number]>(
        'INSERT INTO rate (recipient, window, count) VALUES (?,?,1) ON CONFLICT(recipient, window) DO UPDATE SET count = count + 1',
      ),
    };
  }

  close(): void {
    this.wal.close();
    if (this.db.open) this.db.close();
  }

  /**
   * Schema version 1 (PRAGMA user_version): version 0 keyed the spent set by the token input and
   * kept each partial message's raw token; both become hashes, and `spent.done` appears. A token
   * of version 0 whose message is no longer being reassembled counts as done (it completed, or
   * it was abandoned past the reassembly TTL, long after any client stops resending).
   */
  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version < 1) this.migrateToV1();
    if (version < 2) this.migrateToV2();
    if (version < 3) this.migrateToV3();
    if (version < 4) this.migrateToV4();
  }

  /**
   * Schema version 4: `fragments` becomes a rowid table. As a WITHOUT ROWID table its rows live
   * in the primary key's b-tree, where a row of more than ~1 KB (a fragment's data: up to ~1.9
   * KiB) spills into an overflow page of its own, so every stored fragment wrote two 4 KiB pages
   * of WAL, its own overflow page and the leaf its key falls in. In a rowid table the data is
   * appended to the table's last leaves (rowids grow), several fragments to a page, and only
   * the small (message id, index) key goes to the random place in the key's index: about half
   * the WAL bytes per fragment when a message's fragments come in different batches, as they
   * do from a client's payload stream.
   */
  private migrateToV4(): void {
    this.tx(() => {
      const t = this.db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'fragments'").get();
      if (t && /WITHOUT\s+ROWID/i.test(t.sql)) {
        this.db.exec(`CREATE TABLE fragments_v4 (
  message_id BLOB NOT NULL,
  idx INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (message_id, idx)
);
INSERT INTO fragments_v4 (message_id, idx, data) SELECT message_id, idx, data FROM fragments;
DROP TABLE fragments;
ALTER TABLE fragments_v4 RENAME TO fragments;`);
      }
      this.db.pragma('user_version = 4');
    });
  }

  /**
   * Schema version 3: a mailbox holds SURB replies only (docs/spec/mailbox.md version 3), so
   * `mailbox.surb_id` is NOT NULL. Rows of version 2 without one (clients' loops sent as plain
   * deliveries, of no use to a client of version 3) are dropped with the old table.
   */
  private migrateToV3(): void {
    this.tx(() => {
      const col = this.db
        .prepare<[], { name: string; notnull: number }>('PRAGMA table_info(mailbox)')
        .all()
        .find((c) => c.name === 'surb_id');
      if (col && col.notnull === 0) {
        this.db.exec(`CREATE TABLE mailbox_v3 (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  mailbox BLOB NOT NULL,
  surb_id BLOB NOT NULL,
  payload BLOB NOT NULL,
  expires INTEGER NOT NULL
);
INSERT INTO mailbox_v3 (seq, mailbox, surb_id, payload, expires) SELECT seq, mailbox, surb_id, payload, expires FROM mailbox WHERE surb_id IS NOT NULL;
DROP TABLE mailbox;
ALTER TABLE mailbox_v3 RENAME TO mailbox;
CREATE INDEX IF NOT EXISTS mailbox_by_id ON mailbox(mailbox, seq);
CREATE INDEX IF NOT EXISTS mailbox_expires ON mailbox(expires);`);
      }
      this.db.pragma('user_version = 3');
    });
  }

  /**
   * Schema version 2: key epochs get windows (key_epochs) and users a rotation policy. A user of
   * version 1 keeps its key epoch, from its creation, with no scheduled end: the gateway's
   * rotation policy then schedules its end one period after the first time it is read
   * (planEpochs), so tokens already handed out keep working until then.
   */
  private migrateToV2(): void {
    this.tx(() => {
      const cols = this.db.prepare<[], { name: string }>('PRAGMA table_info(users)').all();
      if (!cols.some((c) => c.name === 'rotation_s')) {
        this.db.exec('ALTER TABLE users ADD COLUMN rotation_s INTEGER');
        this.db.exec('ALTER TABLE users ADD COLUMN grace_s INTEGER');
      }
      this.db.exec(
        'INSERT OR IGNORE INTO key_epochs (address, key_epoch, starts, ends, grace_s) SELECT address, key_epoch, created, NULL, 0 FROM users WHERE key_epoch > 0',
      );
      this.db.pragma('user_version = 2');
    });
  }

  private migrateToV1(): void {
    this.tx(() => {
      const cols = this.db.prepare<[], { name: string }>('PRAGMA table_info(spent)').all();
      if (!cols.some((c) => c.name === 'done')) {
        this.db.exec('ALTER TABLE spent ADD COLUMN done INTEGER NOT NULL DEFAULT 0');
        const rows = this.db.prepare<[], { token_key: string; message_id: Buffer }>('SELECT token_key, message_id FROM spent').all();
        const put = this.db.prepare('UPDATE spent SET token_key = ?, done = (SELECT COUNT(*) = 0 FROM partial WHERE message_id = ?) WHERE token_key = ?');
        for (const r of rows)
          put.run(tokenSpendKey({ keyEpoch: 0, input: Buffer.from(r.token_key, 'hex'), output: new Uint8Array(0) }), r.message_id, r.token_key);
        const partials = this.db.prepare<[], { message_id: Buffer; token: Buffer }>('SELECT message_id, token FROM partial').all();
        const hash = this.db.prepare('UPDATE partial SET token = ? WHERE message_id = ?');
        for (const p of partials) hash.run(Buffer.from(fragmentTokenDigest(p.token)), p.message_id);
      }
      this.db.pragma('user_version = 1');
    });
  }

  /**
   * Runs `fn` in one BEGIN IMMEDIATE transaction, or, inside one already, in a SAVEPOINT of it
   * (inside `batch`, in the batch's transaction itself). One wrapper for all calls:
   * better-sqlite3 builds a transaction function per `db.transaction()`, a measurable cost per
   * fragment.
   */
  tx<T>(fn: () => T): T {
    if (this.inBatch) return fn(); // a throw rolls back the whole batch (and its reads)
    if (this.db.inTransaction) {
      // a savepoint of the caller's transaction: rows written through inside may be rolled back
      try {
        return this.txRunner.immediate(fn) as T;
      } catch (e) {
        this.forget();
        throw e;
      }
    }
    return this.txRunner.immediate(() => {
      this.reads = newReads();
      try {
        return fn();
      } finally {
        this.reads = undefined;
      }
    }) as T;
  }

  /** Forgets the rows read in this transaction (after a write to users or key epochs, or a rollback). */
  private forget(): void {
    if (this.reads) this.reads = newReads();
  }

  /**
   * Runs `fn` in one BEGIN IMMEDIATE transaction inside which `tx()` runs its function directly,
   * without a savepoint of its own (a savepoint per fragment was a fifth of a group commit's
   * cost): a throw anywhere rolls back the whole batch, and the caller retries without the
   * fragment that threw (gateway/group-commit.ts).
   *
   * `deferFsync`: this one transaction commits under synchronous=NORMAL (its COMMIT writes the
   * WAL but does not fsync it), and the caller makes it durable with `wal.sync()` before it
   * tells anyone; every other transaction keeps FULL.
   */
  batch<T>(fn: () => T, opts: { readonly deferFsync?: boolean } = {}): T {
    const defer = opts.deferFsync === true && this.fullSync;
    if (defer) this.syncPragma.normal.run();
    try {
      return this.txRunner.immediate(() => {
        this.inBatch = true;
        this.reads = newReads();
        try {
          return fn();
        } finally {
          this.inBatch = false;
          this.reads = undefined;
        }
      }) as T;
    } finally {
      if (defer) this.syncPragma.full.run();
    }
  }

  // ---- users ----

  /** Adds a recipient; returns the per-user secret (shown once; only its hash is stored). Its first key epoch starts now (`now`, ms). */
  addUser(
    address: string,
    opts: { policy?: Policy; ratePerHour?: number; rotationS?: number | null; graceS?: number | null; now?: number } = {},
  ): { secret: string; user: UserRow } {
    const addr = normalizeRecipient(address);
    if (!/^[^@\s]+@[^@\s]+$/.test(addr) || Buffer.byteLength(addr) > 254) throw new RangeError(`not an address: ${address}`);
    const secret = randomBytes(32).toString('base64url');
    const nowS = Math.floor((opts.now ?? Date.now()) / 1000);
    this.tx(() => {
      this.forget();
      this.db
        .prepare('INSERT INTO users (address, secret_hash, key_epoch, policy, rate_per_hour, created, rotation_s, grace_s) VALUES (?,?,0,?,?,?,?,?)')
        .run(addr, hashSecret(secret), opts.policy ?? 'tokens', opts.ratePerHour ?? 100, nowS, opts.rotationS ?? null, opts.graceS ?? null);
      this.schedule(addr, nowS);
    });
    return { secret, user: this.getUser(addr)! };
  }

  getUser(address: string): UserRow | undefined {
    const c = this.reads?.users;
    const hit = c?.get(address);
    if (hit !== undefined) return hit ?? undefined;
    const r = this.st.getUser.get(normalizeRecipient(address));
    const u = r && userRow(r);
    c?.set(address, u ?? null);
    return u;
  }

  listUsers(): UserRow[] {
    return this.db.prepare<[], RawUser>('SELECT address, key_epoch, policy, rate_per_hour, rotation_s, grace_s FROM users ORDER BY address').all().map(userRow);
  }

  // ---- key epochs ----

  /** The rotation a user follows: its own, else the gateway's. */
  policyOf(u: UserRow): RotationPolicy {
    return { rotationS: u.rotationS ?? this.rotation.rotationS, graceS: u.graceS ?? this.rotation.graceS };
  }

  keyEpochs(address: string): EpochRow[] {
    return this.st.epochsOf.all(normalizeRecipient(address)).map(epochRow);
  }

  /**
   * The user's key epochs at `nowS` (unix seconds), scheduling what is due first (an epoch that
   * covers now, its successor when it ends): the issuance endpoint and the admin commands call
   * this; redemption only reads rows (a token exists only for an epoch that was scheduled).
   */
  schedule(address: string, nowS: number): Schedule {
    const addr = normalizeRecipient(address);
    return this.tx(() => {
      const u = this.getUser(addr);
      if (!u) throw new RangeError(`no such user: ${addr}`);
      const policy = this.policyOf(u);
      const plan = planEpochs(this.keyEpochs(addr), u.highestKeyEpoch, nowS, policy);
      this.applyEpochs(addr, plan.add, plan.end);
      const rows = this.keyEpochs(addr);
      return { current: currentEpoch(rows, nowS)!, next: nextEpoch(rows, nowS), policy };
    });
  }

  private applyEpochs(addr: string, add: readonly EpochRow[], end: readonly { keyEpoch: number; ends: number }[]): void {
    this.forget();
    const ins = this.db.prepare('INSERT INTO key_epochs (address, key_epoch, starts, ends, grace_s) VALUES (?,?,?,?,?)');
    for (const r of add) ins.run(addr, r.keyEpoch, r.starts, r.ends, r.graceS);
    const setEnd = this.db.prepare('UPDATE key_epochs SET ends = ? WHERE address = ? AND key_epoch = ?');
    for (const e of end) setEnd.run(e.ends, addr, e.keyEpoch);
    if (add.length > 0) this.db.prepare('UPDATE users SET key_epoch = MAX(key_epoch, ?) WHERE address = ?').run(Math.max(...add.map((r) => r.keyEpoch)), addr);
  }

  /** Does a token of `keyEpoch` for `address` verify at `nowMs`? (Its epoch's window, or grace after a scheduled end.) */
  acceptsKeyEpoch(address: string, keyEpoch: number, nowMs: number): boolean {
    return acceptsAt(this.epochOf(address, keyEpoch), Math.floor(nowMs / 1000));
  }

  /** One key epoch row (read once per transaction). */
  private epochOf(address: string, keyEpoch: number): EpochRow | undefined {
    let c: Map<number, EpochRow | null> | undefined;
    if (this.reads) {
      c = this.reads.epochs.get(address);
      if (c === undefined) this.reads.epochs.set(address, (c = new Map()));
      const hit = c.get(keyEpoch);
      if (hit !== undefined) return hit ?? undefined;
    }
    const r = this.st.epochGet.get(normalizeRecipient(address), keyEpoch);
    const row = r && epochRow(r);
    c?.set(keyEpoch, row ?? null);
    return row;
  }

  /** Revokes every outstanding token of the user now: its epochs end without grace and a fresh one starts. Returns its number. */
  rotateUser(address: string, nowS = Math.floor(Date.now() / 1000)): number {
    const addr = normalizeRecipient(address);
    return this.tx(() => {
      const u = this.getUser(addr);
      if (!u) throw new RangeError(`no such user: ${addr}`);
      const r = revokeAll(this.keyEpochs(addr), u.highestKeyEpoch, nowS, this.policyOf(u));
      this.forget();
      const rev = this.db.prepare('UPDATE key_epochs SET revoked = 1 WHERE address = ? AND key_epoch = ?');
      for (const e of r.revoke) rev.run(addr, e);
      this.applyEpochs(addr, [r.add], []);
      return r.add.keyEpoch;
    });
  }

  /** Sets a user's own rotation (seconds; 0: never) and grace; null: follow the gateway. Takes effect from the epoch after the next. */
  setRotation(address: string, rotationS: number | null, graceS: number | null): void {
    const addr = normalizeRecipient(address);
    this.forget();
    const r = this.db.prepare('UPDATE users SET rotation_s = ?, grace_s = ? WHERE address = ?').run(rotationS, graceS, addr);
    if (r.changes === 0) throw new RangeError(`no such user: ${addr}`);
  }

  /**
   * Counts `n` tokens issued in a key epoch, if that keeps the epoch within `max`; false (and
   * nothing counted) otherwise. The cap is what bounds the spent set per recipient and epoch.
   */
  countIssued(address: string, keyEpoch: number, n: number, max: number): boolean {
    return (
      this.db
        .prepare('UPDATE key_epochs SET issued = issued + ? WHERE address = ? AND key_epoch = ? AND revoked = 0 AND issued + ? <= ?')
        .run(n, normalizeRecipient(address), keyEpoch, n, max).changes === 1
    );
  }

  issuedIn(address: string, keyEpoch: number): number {
    const r = this.db
      .prepare<[string, number], { issued: number }>('SELECT issued FROM key_epochs WHERE address = ? AND key_epoch = ?')
      .get(normalizeRecipient(address), keyEpoch);
    return r?.issued ?? 0;
  }

  /** Replaces the per-user secret; returns the new one. */
  resetSecret(address: string): string {
    const addr = normalizeRecipient(address);
    const secret = randomBytes(32).toString('base64url');
    const r = this.db.prepare('UPDATE users SET secret_hash = ? WHERE address = ?').run(hashSecret(secret), addr);
    if (r.changes === 0) throw new RangeError(`no such user: ${addr}`);
    return secret;
  }

  setPolicy(address: string, policy: Policy, ratePerHour?: number): void {
    const addr = normalizeRecipient(address);
    this.forget();
    const r = this.db
      .prepare('UPDATE users SET policy = ?, rate_per_hour = COALESCE(?, rate_per_hour) WHERE address = ?')
      .run(policy, ratePerHour ?? null, addr);
    if (r.changes === 0) throw new RangeError(`no such user: ${addr}`);
  }

  /** Constant-time check of a presented per-user secret. */
  checkSecret(address: string, secret: string): boolean {
    const r = this.st.userSecret.get(normalizeRecipient(address));
    const h = hashSecret(secret);
    // compared in constant time, and for an unknown address too, so timing tells neither
    const same = bytesEqual(h, r?.secret_hash ?? Buffer.alloc(32));
    return r !== undefined && same;
  }

  // ---- tokens ----

  /** What a spent token is bound to (undefined: unspent). */
  spentFor(tokenKey: string): SpentRow | undefined {
    const c = this.reads?.spent;
    const hit = c?.get(tokenKey);
    if (hit !== undefined) return hit ?? undefined;
    const r = this.st.spentGet.get(tokenKey);
    const row = r && { messageId: r.message_id, recipient: r.recipient, done: r.done !== 0 };
    c?.set(tokenKey, row ?? null);
    return row;
  }

  markSpent(tokenKey: string, messageId: Uint8Array, recipient: string, keyEpoch: number, now: number): void {
    const id = b(messageId);
    const changed = this.st.spentPut.run(tokenKey, id, recipient, keyEpoch, Math.floor(now / 1000)).changes === 1;
    const c = this.reads?.spent;
    if (!c) return;
    if (changed) c.set(tokenKey, { messageId: Buffer.from(id), recipient, done: false });
    else c.delete(tokenKey); // it was there already: read again when asked
  }

  /** The token's message is complete (queued): from now on the token admits nothing more. */
  markSpentDone(tokenKey: string): void {
    this.st.spentDone.run(tokenKey);
    const c = this.reads?.spent;
    const row = c?.get(tokenKey);
    if (row) c!.set(tokenKey, { ...row, done: true });
    else c?.delete(tokenKey);
  }

  /**
   * Forgets, per key epoch that stopped verifying for good (revoked, or past its end + grace),
   * its spent tokens and then the epoch row itself (each recipient's highest row stays, so the
   * schedule can continue from it). A token of such an epoch fails the key-epoch check before
   * the spent set is consulted, so its row is no longer needed. The daemon's housekeeping runs
   * this every round; with the per-epoch issuance cap it is what keeps the set bounded.
   */
  purgeOldSpent(nowMs: number): { spent: number; epochs: number } {
    const now = Math.floor(nowMs / 1000);
    return this.tx(() => {
      this.forget();
      const dead = this.db
        .prepare<[], RawEpoch & { address: string; top: number }>(
          `SELECT k.address, k.key_epoch, k.starts, k.ends, k.grace_s, k.revoked,
                  (SELECT MAX(m.key_epoch) FROM key_epochs m WHERE m.address = k.address) AS top
           FROM key_epochs k WHERE k.revoked = 1 OR k.ends IS NOT NULL`,
        )
        .all()
        .filter((r) => isDead(epochRow(r), now));
      const delSpent = this.db.prepare('DELETE FROM spent WHERE recipient = ? AND key_epoch = ?');
      const delEpoch = this.db.prepare('DELETE FROM key_epochs WHERE address = ? AND key_epoch = ?');
      let spent = 0;
      let epochs = 0;
      for (const r of dead) {
        spent += delSpent.run(r.address, r.key_epoch).changes;
        if (r.key_epoch !== r.top) epochs += delEpoch.run(r.address, r.key_epoch).changes;
      }
      // spent rows of an epoch the gateway has no row for (e.g. of a user that was removed)
      spent += this.db
        .prepare('DELETE FROM spent WHERE NOT EXISTS (SELECT 1 FROM key_epochs k WHERE k.address = spent.recipient AND k.key_epoch = spent.key_epoch)')
        .run().changes;
      return { spent, epochs };
    });
  }

  spentCount(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM spent').get() as { n: number }).n;
  }

  // ---- reassembly ----

  getPartial(messageId: Uint8Array): PartialRow | undefined {
    const c = this.reads?.partials;
    if (!c) return this.readPartial(messageId);
    const k = idKey(messageId);
    const hit = c.get(k);
    if (hit !== undefined) return hit ?? undefined;
    const row = this.readPartial(messageId);
    c.set(k, row ?? null);
    return row;
  }

  private readPartial(messageId: Uint8Array): PartialRow | undefined {
    const r = this.st.partialGet.get(b(messageId)) as
      | {
          message_id: Buffer;
          recipient: string;
          count: number;
          total_length: number;
          token: Buffer;
          first_seen: number;
          expires: number;
          received: number;
          bytes: number;
        }
      | undefined;
    return (
      r && {
        messageId: r.message_id,
        recipient: r.recipient,
        count: r.count,
        totalLength: r.total_length,
        tokenDigest: r.token,
        firstSeen: r.first_seen,
        expires: r.expires,
        received: r.received,
        bytes: r.bytes,
      }
    );
  }

  createPartial(p: {
    messageId: Uint8Array;
    recipient: string;
    count: number;
    totalLength: number;
    token: Uint8Array;
    /** fragmentTokenDigest(token), when the caller has it. */
    tokenDigest?: Uint8Array;
    now: number;
    ttlMs: number;
  }): void {
    const digest = b(p.tokenDigest ?? fragmentTokenDigest(p.token));
    this.st.partialPut.run(b(p.messageId), p.recipient, p.count, p.totalLength, digest, p.now, p.now + p.ttlMs);
    this.reads?.partials.set(idKey(p.messageId), {
      messageId: Buffer.from(p.messageId),
      recipient: p.recipient,
      count: p.count,
      totalLength: p.totalLength,
      tokenDigest: Buffer.from(digest),
      firstSeen: p.now,
      expires: p.now + p.ttlMs,
      received: 0,
      bytes: 0,
    });
  }

  /**
   * Stores a fragment of a message that has its partial row: 'duplicate' when that index was
   * already stored; 'refused' (nothing stored) when `fits` is false, which counts only for a new
   * index (one statement for the common case instead of a lookup before the insert; inside the
   * caller's transaction).
   */
  putFragment(messageId: Uint8Array, index: number, data: Uint8Array, fits = true): 'stored' | 'duplicate' | 'refused' {
    const id = b(messageId);
    const r = this.st.fragPut.run(id, index, b(data));
    if (r.changes === 0) return 'duplicate';
    if (!fits) {
      this.st.fragDelOne.run(id, index);
      return 'refused';
    }
    this.st.partialBump.run(data.length, id);
    const c = this.reads?.partials;
    if (c) {
      const k = idKey(messageId);
      const p = c.get(k);
      if (p) c.set(k, { ...p, received: p.received + 1, bytes: p.bytes + data.length });
      else c.delete(k);
    }
    return 'stored';
  }

  hasFragment(messageId: Uint8Array, index: number): boolean {
    return this.st.fragHas.get(b(messageId), index) !== undefined;
  }

  fragments(messageId: Uint8Array): { idx: number; data: Buffer }[] {
    return this.st.fragAll.all(b(messageId));
  }

  dropPartial(messageId: Uint8Array): void {
    const id = b(messageId);
    this.st.fragDel.run(id);
    this.st.partialDel.run(id);
    this.reads?.partials.set(idKey(messageId), null);
  }

  /** Drops incomplete messages past their reassembly timeout. Returns how many. */
  purgeExpiredPartials(now: number): number {
    return this.tx(() => {
      const ids = this.db.prepare<[number], { message_id: Buffer }>('SELECT message_id FROM partial WHERE expires <= ?').all(now);
      for (const { message_id } of ids) this.dropPartial(message_id);
      return ids.length;
    });
  }

  partialCount(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM partial').get() as { n: number }).n;
  }

  // ---- rate limit (open policy) ----

  rateCount(recipient: string, window: number): number {
    return this.st.rateGet.get(recipient, window)?.count ?? 0;
  }

  rateBump(recipient: string, window: number): void {
    this.st.rateBump.run(recipient, window);
  }

  purgeRate(beforeWindow: number): number {
    return this.db.prepare('DELETE FROM rate WHERE window < ?').run(beforeWindow).changes;
  }

  // ---- hand-off queue ----

  enqueue(messageId: Uint8Array, recipient: string, body: Uint8Array, now: number): string {
    const qid = handoffIdOf(messageId);
    this.st.queuePut.run(b(messageId), qid, recipient, b(body), body.length, now, now);
    return qid;
  }

  /** The hand-off queue row of a message (also once delivered, with its body cleared). */
  handoffOf(messageId: Uint8Array): QueueRow | undefined {
    const r = this.st.queueGet.get(b(messageId));
    return r && queueRow(r);
  }

  byHandoffId(handoffId: string): QueueRow | undefined {
    const r = this.st.queueGetById.get(handoffId);
    return r && queueRow(r);
  }

  due(now: number, limit: number): QueueRow[] {
    return this.st.queueDue.all(now, limit).map(queueRow);
  }

  nextDue(): number | null {
    return this.st.queueNextDue.get()?.t ?? null;
  }

  /** queued → sending (durable before the first byte goes to the MX). False if someone else claimed it. */
  claim(handoffId: string): boolean {
    return this.st.queueClaim.run(handoffId).changes === 1;
  }

  markDelivered(handoffId: string, now: number): void {
    this.st.queueDelivered.run(now, handoffId);
  }

  retryLater(handoffId: string, at: number, error: string): void {
    this.st.queueRetryLater.run(at, error.slice(0, 500), handoffId);
  }

  markFailed(handoffId: string, error: string): void {
    this.st.queueFailed.run(error.slice(0, 500), handoffId);
  }

  /** Rows left in 'sending' by a crash. */
  inFlight(): QueueRow[] {
    return this.db.prepare<[], RawQueue>("SELECT * FROM queue WHERE state = 'sending'").all().map(queueRow);
  }

  listQueue(states?: readonly QueueState[]): QueueRow[] {
    const rows = this.db.prepare<[], RawQueue>('SELECT * FROM queue ORDER BY created').all().map(queueRow);
    return states ? rows.filter((r) => states.includes(r.state)) : rows;
  }

  /** failed/sending/queued → queued now. Returns how many rows changed. */
  retry(handoffId: string | 'all', now: number): number {
    const sql =
      handoffId === 'all'
        ? "UPDATE queue SET state = 'queued', next_attempt = ? WHERE state IN ('queued','failed','sending')"
        : "UPDATE queue SET state = 'queued', next_attempt = ? WHERE state IN ('queued','failed','sending') AND queue_id = ?";
    const st = this.db.prepare(sql);
    return (handoffId === 'all' ? st.run(now) : st.run(now, handoffId)).changes;
  }

  /** Removes a queue row (any state) or, with 'delivered', delivered rows older than `before`. */
  purge(what: { handoffId: string } | { deliveredBefore: number } | { failed: true }): number {
    if ('handoffId' in what) return this.db.prepare('DELETE FROM queue WHERE queue_id = ?').run(what.handoffId).changes;
    if ('failed' in what) return this.db.prepare("DELETE FROM queue WHERE state = 'failed'").run().changes;
    return this.db.prepare("DELETE FROM queue WHERE state = 'delivered' AND delivered_at < ?").run(what.deliveredBefore).changes;
  }

  queueDepth(): Record<QueueState, number> {
    const out: Record<QueueState, number> = { queued: 0, sending: 0, delivered: 0, failed: 0 };
    for (const r of this.st.queueDepth.all()) out[r.state] = r.n;
    return out;
  }

  // ---- mailboxes ----

  /** Appends an item (a SURB reply); drops the oldest beyond `maxItems`. Returns how many were dropped. */
  mailboxPut(mailbox: Uint8Array, item: { surbId: Uint8Array; payload: Uint8Array }, now: number, ttlMs: number, maxItems: number): number {
    return this.tx(() => {
      this.db
        .prepare('INSERT INTO mailbox (mailbox, surb_id, payload, expires) VALUES (?,?,?,?)')
        .run(b(mailbox), b(item.surbId), b(item.payload), now + ttlMs);
      const n = (this.db.prepare('SELECT COUNT(*) AS n FROM mailbox WHERE mailbox = ?').get(b(mailbox)) as { n: number }).n;
      if (n <= maxItems) return 0;
      return this.db.prepare('DELETE FROM mailbox WHERE seq IN (SELECT seq FROM mailbox WHERE mailbox = ? ORDER BY seq LIMIT ?)').run(b(mailbox), n - maxItems)
        .changes;
    });
  }

  /** Takes (removes and returns) up to `limit` unexpired items, oldest first. */
  mailboxTake(mailbox: Uint8Array, now: number, limit = 1000): { seq: number; surbId: Uint8Array; payload: Uint8Array }[] {
    return this.tx(() => {
      const rows = this.db
        .prepare<[Buffer, number, number], { seq: number; surb_id: Buffer; payload: Buffer }>(
          'SELECT seq, surb_id, payload FROM mailbox WHERE mailbox = ? AND expires > ? ORDER BY seq LIMIT ?',
        )
        .all(b(mailbox), now, limit);
      const del = this.db.prepare('DELETE FROM mailbox WHERE seq = ?');
      for (const r of rows) del.run(r.seq);
      return rows.map((r) => ({ seq: r.seq, surbId: new Uint8Array(r.surb_id), payload: new Uint8Array(r.payload) }));
    });
  }

  purgeExpiredMailbox(now: number): number {
    return this.db.prepare('DELETE FROM mailbox WHERE expires <= ?').run(now).changes;
  }

  mailboxSize(mailbox: Uint8Array): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM mailbox WHERE mailbox = ?').get(b(mailbox)) as { n: number }).n;
  }
}
