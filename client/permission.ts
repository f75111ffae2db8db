/**
 * The recipient's own delivery permission (docs/client.md, "Giving permission"), in
 * `data_dir/permission.sqlite`, apart from the outbox: the tokens this user requested from its
 * own gateway (blinded, so the gateway never saw them) and which contact each one went to.
 *
 * What the client pins, so that its gateway cannot tell one batch of tokens from another by the
 * key or the key epoch it issues them under (which would let it link a redeemed token to the
 * contact it was given to):
 * - the gateway's issuer key, taken from the signed network document only, and checked to be
 *   the one of the last request (a change is refused unless the user accepts it);
 * - the key epochs the gateway announced: an epoch keeps the window it was announced with, new
 *   epochs have higher numbers and start no earlier than the last known one ends, so at any time
 *   there is one epoch to issue under (two in the grace around a boundary, as the schedule says).
 *   An epoch that overlaps a known one can only come from a revocation, which the user accepts
 *   by name (`--accept-epoch N`) or makes itself (`tokens rotate`).
 *
 * Each token is handed to exactly one contact: export marks it with its bundle in the same
 * transaction that picks it, and keeps only a digest of it from then on.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { privateDir, privateFile } from '../runtime/private-files.ts';
import { decodeToken, encodeToken, normalizeRecipient, type KeyEpochWindow, type Token } from '../proto/tokens/index.ts';

export interface OwnEpoch extends KeyEpochWindow {
  readonly revoked: boolean;
}

export type PinCheck =
  { readonly ok: true; readonly add: readonly KeyEpochWindow[]; readonly revokeBelow: number | null } | { readonly ok: false; readonly reason: string };

const isoS = (s: number | null) => (s === null ? 'no end' : new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'));
const span = (w: KeyEpochWindow) => `${isoS(w.starts)} – ${isoS(w.ends)}`;

/**
 * Checks the key epochs a gateway announces against the ones this client knows (pure). `accept`
 * names a new epoch the user knows comes from a revocation.
 */
export function checkAnnouncedEpochs(known: readonly OwnEpoch[], announced: readonly KeyEpochWindow[], accept?: number): PinCheck {
  const add: KeyEpochWindow[] = [];
  let revokeBelow: number | null = null;
  const live = known.filter((k) => !k.revoked).sort((a, b) => a.keyEpoch - b.keyEpoch);
  let top = Math.max(0, ...known.map((k) => k.keyEpoch));
  let latest: KeyEpochWindow | undefined = live.at(-1);
  for (const a of [...announced].sort((x, y) => x.keyEpoch - y.keyEpoch)) {
    const k = known.find((x) => x.keyEpoch === a.keyEpoch);
    if (k) {
      if (k.revoked) return { ok: false, reason: `the gateway offers key epoch ${a.keyEpoch} again, which this client knows was revoked` };
      const sameEnd = k.ends === a.ends || (k.ends === null && a.ends !== null); // "no end" may get one (a policy change)
      if (k.starts !== a.starts || !sameEnd)
        return {
          ok: false,
          reason: `the gateway now says key epoch ${a.keyEpoch} runs ${span(a)}, but it announced ${span(k)} before; a gateway must not move an epoch it announced`,
        };
      if (k.ends === null && a.ends !== null) add.push(a);
      if (!latest || a.keyEpoch >= latest.keyEpoch) latest = a;
      continue;
    }
    if (a.keyEpoch <= top)
      return { ok: false, reason: `the gateway announces key epoch ${a.keyEpoch}, but this client already knows epochs up to ${top}; numbers only go up` };
    const overlaps = latest !== undefined && (latest.ends === null || a.starts < latest.ends);
    if (overlaps) {
      if (accept !== a.keyEpoch)
        return {
          ok: false,
          reason:
            `the gateway announces key epoch ${a.keyEpoch} from ${isoS(a.starts)} while key epoch ${latest!.keyEpoch}, which this client knows, runs until ${isoS(latest!.ends)}. ` +
            `Only a revocation does that: if your tokens were revoked (postmix gateway user rotate at your provider), run again with --accept-epoch ${a.keyEpoch}; ` +
            `otherwise your gateway may be issuing under more than one epoch to tell your contacts' tokens apart, and should not be trusted with this request`,
        };
      revokeBelow = a.keyEpoch;
    }
    add.push(a);
    top = a.keyEpoch;
    latest = a;
  }
  return { ok: true, add, revokeBelow };
}

export interface ContactSummary {
  readonly contact: string;
  /** per key epoch: tokens given to this contact */
  readonly given: readonly { keyEpoch: number; count: number; ends: number | null; live: boolean }[];
  /** given in epochs that still verify: an upper bound on what the contact can still use (nobody, by design, tells the user which were redeemed) */
  readonly atMostLeft: number;
  readonly lastBundleAt: number;
}

export interface BundleRecord {
  readonly id: number;
  readonly contact: string;
  readonly epochs: readonly { keyEpoch: number; tokens: readonly Token[] }[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS own_identity (
  recipient TEXT PRIMARY KEY,
  issuer_pk BLOB NOT NULL,
  pinned_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS own_epochs (
  recipient TEXT NOT NULL,
  key_epoch INTEGER NOT NULL,
  starts INTEGER NOT NULL,
  ends INTEGER,
  revoked INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (recipient, key_epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bundles (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient TEXT NOT NULL,
  contact TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS own_tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient TEXT NOT NULL,
  key_epoch INTEGER NOT NULL,
  issuer_pk BLOB NOT NULL,
  digest BLOB NOT NULL UNIQUE,  -- SHA-256 of the token: kept after export, when the token itself is dropped
  token BLOB,                   -- NULL once given to a contact
  issued_at INTEGER NOT NULL,
  bundle_id INTEGER REFERENCES bundles(id)
);
CREATE INDEX IF NOT EXISTS own_tokens_free ON own_tokens(recipient, key_epoch, bundle_id);
`;

const digestOf = (t: Token) => createHash('sha256').update('postmix-own-token-v1|').update(encodeToken(t)).digest();

export function permissionPath(dataDir: string): string {
  return join(dataDir, 'permission.sqlite');
}

export class PermissionStore {
  readonly db: Database.Database;

  constructor(readonly path: string) {
    // holds tokens not given yet and who got which bundle: the user's only
    if (path !== ':memory:') {
      privateDir(dirname(path));
      privateFile(path);
    }
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  issuerKey(recipient: string): Uint8Array | undefined {
    const r = this.db.prepare<[string], { issuer_pk: Buffer }>('SELECT issuer_pk FROM own_identity WHERE recipient = ?').get(normalizeRecipient(recipient));
    return r && new Uint8Array(r.issuer_pk);
  }

  /** Pins the issuer key; a different one than before drops the tokens not yet given (they no longer verify). */
  pinIssuerKey(recipient: string, pk: Uint8Array, nowS: number): void {
    const r = normalizeRecipient(recipient);
    this.db
      .transaction(() => {
        this.db
          .prepare(
            'INSERT INTO own_identity (recipient, issuer_pk, pinned_at) VALUES (?,?,?) ON CONFLICT(recipient) DO UPDATE SET issuer_pk = excluded.issuer_pk, pinned_at = excluded.pinned_at',
          )
          .run(r, Buffer.from(pk), nowS);
        this.db.prepare('DELETE FROM own_tokens WHERE recipient = ? AND bundle_id IS NULL AND issuer_pk != ?').run(r, Buffer.from(pk));
      })
      .immediate();
  }

  epochs(recipient: string): OwnEpoch[] {
    return this.db
      .prepare<[string], { key_epoch: number; starts: number; ends: number | null; revoked: number }>(
        'SELECT key_epoch, starts, ends, revoked FROM own_epochs WHERE recipient = ? ORDER BY key_epoch',
      )
      .all(normalizeRecipient(recipient))
      .map((e) => ({ keyEpoch: e.key_epoch, starts: e.starts, ends: e.ends, revoked: e.revoked !== 0 }));
  }

  /** Records what checkAnnouncedEpochs allowed; `revokeBelow` marks earlier epochs revoked and drops their tokens not yet given. */
  recordEpochs(recipient: string, add: readonly KeyEpochWindow[], revokeBelow: number | null): void {
    const r = normalizeRecipient(recipient);
    this.db
      .transaction(() => {
        const up = this.db.prepare(
          'INSERT INTO own_epochs (recipient, key_epoch, starts, ends) VALUES (?,?,?,?) ON CONFLICT(recipient, key_epoch) DO UPDATE SET ends = excluded.ends',
        );
        for (const w of add) up.run(r, w.keyEpoch, w.starts, w.ends);
        if (revokeBelow !== null) {
          this.db.prepare('UPDATE own_epochs SET revoked = 1 WHERE recipient = ? AND key_epoch < ?').run(r, revokeBelow);
          this.db.prepare('DELETE FROM own_tokens WHERE recipient = ? AND key_epoch < ? AND bundle_id IS NULL').run(r, revokeBelow);
        }
      })
      .immediate();
  }

  addTokens(recipient: string, issuerPk: Uint8Array, tokens: readonly Token[], nowS: number): number {
    const r = normalizeRecipient(recipient);
    const ins = this.db.prepare('INSERT OR IGNORE INTO own_tokens (recipient, key_epoch, issuer_pk, digest, token, issued_at) VALUES (?,?,?,?,?,?)');
    let n = 0;
    this.db
      .transaction(() => {
        for (const t of tokens) n += ins.run(r, t.keyEpoch, Buffer.from(issuerPk), digestOf(t), Buffer.from(encodeToken(t)), nowS).changes;
      })
      .immediate();
    return n;
  }

  /** Tokens requested and not given to anyone yet, of one key epoch. */
  held(recipient: string, keyEpoch: number): number {
    return (
      this.db
        .prepare<[string, number], { n: number }>('SELECT COUNT(*) AS n FROM own_tokens WHERE recipient = ? AND key_epoch = ? AND bundle_id IS NULL')
        .get(normalizeRecipient(recipient), keyEpoch)?.n ?? 0
    );
  }

  /**
   * Takes `count` held tokens of each listed key epoch for `contact`, in one transaction: they
   * belong to this bundle from then on and to no other. `write` gets the tokens and must store
   * the bundle (a file); if it throws, nothing is taken.
   */
  give(
    recipient: string,
    contact: string,
    perEpoch: readonly { keyEpoch: number; count: number }[],
    nowS: number,
    write: (b: BundleRecord) => void,
  ): BundleRecord {
    const r = normalizeRecipient(recipient);
    const c = normalizeRecipient(contact);
    return this.db
      .transaction(() => {
        const id = Number(this.db.prepare('INSERT INTO bundles (recipient, contact, created_at) VALUES (?,?,?)').run(r, c, nowS).lastInsertRowid);
        const epochs: { keyEpoch: number; tokens: Token[] }[] = [];
        for (const { keyEpoch, count } of perEpoch) {
          const rows = this.db
            .prepare<[string, number, number], { id: number; token: Buffer }>(
              'SELECT id, token FROM own_tokens WHERE recipient = ? AND key_epoch = ? AND bundle_id IS NULL ORDER BY id LIMIT ?',
            )
            .all(r, keyEpoch, count);
          if (rows.length < count) throw new Error(`only ${rows.length} token(s) of key epoch ${keyEpoch} held, ${count} wanted`);
          const take = this.db.prepare('UPDATE own_tokens SET bundle_id = ?, token = NULL WHERE id = ? AND bundle_id IS NULL');
          for (const row of rows) if (take.run(id, row.id).changes !== 1) throw new Error('a token was given away meanwhile');
          epochs.push({ keyEpoch, tokens: rows.map((row) => decodeToken(new Uint8Array(row.token))!) });
        }
        const b = { id, contact: c, epochs };
        write(b);
        return b;
      })
      .immediate();
  }

  /** Per contact: what was given, per key epoch, and how much of it is in epochs that still verify. */
  contacts(recipient: string, nowS: number, graceS: number): ContactSummary[] {
    const r = normalizeRecipient(recipient);
    const epochs = new Map(this.epochs(r).map((e) => [e.keyEpoch, e]));
    const rows = this.db
      .prepare<[string], { contact: string; key_epoch: number; n: number; last: number }>(
        `SELECT b.contact, t.key_epoch, COUNT(*) AS n, MAX(b.created_at) AS last FROM own_tokens t JOIN bundles b ON b.id = t.bundle_id
         WHERE t.recipient = ? GROUP BY b.contact, t.key_epoch ORDER BY b.contact, t.key_epoch`,
      )
      .all(r);
    const pk = this.issuerKey(r);
    const byContact = new Map<string, ContactSummary>();
    for (const row of rows) {
      const e = epochs.get(row.key_epoch);
      const live = !!e && !e.revoked && (e.ends === null || nowS < e.ends + graceS) && pk !== undefined;
      const prev = byContact.get(row.contact);
      const given = [...(prev?.given ?? []), { keyEpoch: row.key_epoch, count: row.n, ends: e?.ends ?? null, live }];
      byContact.set(row.contact, {
        contact: row.contact,
        given,
        atMostLeft: given.filter((g) => g.live).reduce((a, g) => a + g.count, 0),
        lastBundleAt: Math.max(prev?.lastBundleAt ?? 0, row.last),
      });
    }
    return [...byContact.values()];
  }

  /** Digests of every token given to `contact` (for checks that no two contacts share one). */
  givenDigests(recipient: string, contact: string): Buffer[] {
    return this.db
      .prepare<[string, string], { digest: Buffer }>(
        'SELECT t.digest FROM own_tokens t JOIN bundles b ON b.id = t.bundle_id WHERE t.recipient = ? AND b.contact = ?',
      )
      .all(normalizeRecipient(recipient), normalizeRecipient(contact))
      .map((x) => x.digest);
  }
}
