/**
 * The token wallet (sender side), in the outbox database (so a message and the token it spends
 * are written in one transaction). A token is imported from a bundle (docs/spec/tokens.md),
 * picked for a message at intake, and marked spent by Outbox.accept together with the message.
 *
 * A bundle says when each key epoch's tokens are good (notBefore, expires): the wallet only
 * offers a token inside that window, so a sender whose tokens for a recipient have all expired
 * is told when it submits (routing refuses with the reason), not by a bounce. The recipient's
 * gateway takes a token a grace window past `expires`, for mail already on its way.
 */
import type Database from 'better-sqlite3';
import { encodeToken, normalizeRecipient, parseBundle } from '../proto/tokens/index.ts';
import { bytesEqual } from '../proto/util/bytes.ts';

export interface WalletEntry {
  readonly recipient: string;
  readonly keyEpoch: number;
  readonly unspent: number;
  readonly spent: number;
  /** unix seconds; null: not said by the bundle */
  readonly notBefore: number | null;
  readonly expires: number | null;
}

export interface PickedToken {
  readonly id: number;
  readonly recipient: string;
  readonly keyEpoch: number;
  readonly token: Uint8Array;
}

export interface ImportResult {
  readonly recipient: string;
  readonly added: number;
  readonly duplicates: number;
  readonly epochs: readonly { keyEpoch: number; added: number; duplicates: number; notBefore: number | null; expires: number | null }[];
}

/** What the wallet holds for one recipient at a time, for routing and for what the user is told. */
export interface TokenState {
  /** usable now (in their window, under an accepted issuer key) */
  readonly usable: number;
  /** unspent but past their epoch's end */
  readonly expired: number;
  /** unspent, their epoch not started yet */
  readonly notYet: number;
  /** when the last of the expired ones expired (unix s) */
  readonly lastExpired: number | null;
  /** when the first not-yet-valid one becomes valid (unix s) */
  readonly firstValid: number | null;
  /** when the usable ones stop being usable, the latest (unix s; null: no end known) */
  readonly usableUntil: number | null;
}

/** Below this many unspent tokens for a recipient, `list` and the logs warn. */
export const DEFAULT_LOW_WATER = 3;

function issuerOk(pk: Buffer, keys: readonly Uint8Array[] | undefined): boolean {
  return !keys || keys.some((k) => bytesEqual(pk, k));
}

const secondsOf = (ms: number) => Math.floor(ms / 1000);

type Row = { id: number; recipient: string; key_epoch: number; issuer_pk: Buffer; token: Buffer; not_before: number | null; expires: number | null };

export class Wallet {
  constructor(
    private readonly db: Database.Database,
    readonly lowWater = DEFAULT_LOW_WATER,
  ) {
    // the validity window arrived with bundle version 2; tokens of older bundles have none
    const cols = db.prepare<[], { name: string }>('PRAGMA table_info(tokens)').all();
    if (!cols.some((c) => c.name === 'expires')) {
      db.exec('ALTER TABLE tokens ADD COLUMN not_before INTEGER');
      db.exec('ALTER TABLE tokens ADD COLUMN expires INTEGER');
    }
  }

  /** Imports a bundle (JSON text). Throws BundleError on a malformed bundle. */
  importBundle(text: string, now = Date.now()): ImportResult {
    const b = parseBundle(text);
    const ins = this.db.prepare(
      'INSERT OR IGNORE INTO tokens (recipient, key_epoch, issuer_pk, token, imported_at, not_before, expires) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    const epochs: ImportResult['epochs'][number][] = [];
    this.db
      .transaction(() => {
        for (const e of b.epochs) {
          let added = 0;
          for (const t of e.tokens)
            added += ins.run(b.recipient, e.keyEpoch, Buffer.from(b.issuerPublicKey), Buffer.from(encodeToken(t)), now, e.notBefore, e.expires).changes;
          epochs.push({ keyEpoch: e.keyEpoch, added, duplicates: e.tokens.length - added, notBefore: e.notBefore, expires: e.expires });
        }
      })
      .immediate();
    const added = epochs.reduce((a, e) => a + e.added, 0);
    return { recipient: b.recipient, added, duplicates: b.tokens.length - added, epochs };
  }

  /** Per recipient and key epoch: unspent and spent counts and the epoch's window. */
  list(): WalletEntry[] {
    return (
      this.db
        .prepare(
          `SELECT recipient, key_epoch, SUM(state = 'unspent') AS unspent, SUM(state = 'spent') AS spent, MIN(not_before) AS not_before, MAX(expires) AS expires
           FROM tokens GROUP BY recipient, key_epoch ORDER BY recipient, key_epoch`,
        )
        .all() as { recipient: string; key_epoch: number; unspent: number; spent: number; not_before: number | null; expires: number | null }[]
    ).map((r) => ({
      recipient: r.recipient,
      keyEpoch: r.key_epoch,
      unspent: r.unspent,
      spent: r.spent,
      notBefore: r.not_before,
      expires: r.expires,
    }));
  }

  private unspentRows(recipient: string, issuerKeys?: readonly Uint8Array[]): Row[] {
    return (
      this.db
        .prepare(
          `SELECT id, recipient, key_epoch, issuer_pk, token, not_before, expires FROM tokens WHERE recipient = ? AND state = 'unspent'
           ORDER BY expires IS NULL, expires, key_epoch DESC, id`,
        )
        .all(normalizeRecipient(recipient)) as Row[]
    ).filter((r) => issuerOk(r.issuer_pk, issuerKeys));
  }

  /** Unspent tokens for a recipient usable at `now` (ms), optionally only those issued under one of `issuerKeys`. */
  count(recipient: string, issuerKeys?: readonly Uint8Array[], now = Date.now()): number {
    return this.state(recipient, issuerKeys, now).usable;
  }

  state(recipient: string, issuerKeys?: readonly Uint8Array[], now = Date.now()): TokenState {
    const t = secondsOf(now);
    let usable = 0;
    let expired = 0;
    let notYet = 0;
    let lastExpired: number | null = null;
    let firstValid: number | null = null;
    let usableUntil: number | null = null;
    let openEnded = false;
    for (const r of this.unspentRows(recipient, issuerKeys)) {
      if (r.expires !== null && t >= r.expires) {
        expired++;
        lastExpired = Math.max(lastExpired ?? 0, r.expires);
      } else if (r.not_before !== null && t < r.not_before) {
        notYet++;
        firstValid = Math.min(firstValid ?? Number.MAX_SAFE_INTEGER, r.not_before);
      } else {
        usable++;
        if (r.expires === null) openEnded = true;
        else usableUntil = Math.max(usableUntil ?? 0, r.expires);
      }
    }
    return { usable, expired, notYet, lastExpired, firstValid, usableUntil: openEnded ? null : usableUntil };
  }

  /**
   * An unspent token for `recipient` usable at `now` (the one expiring first, so none is wasted;
   * among tokens without a window, the newest key epoch), only under `issuerKeys` when given.
   * It is not marked here: Outbox.accept spends it atomically with the message.
   */
  pick(recipient: string, issuerKeys?: readonly Uint8Array[], now = Date.now()): PickedToken | undefined {
    const t = secondsOf(now);
    const r = this.unspentRows(recipient, issuerKeys).find((x) => (x.expires === null || t < x.expires) && (x.not_before === null || t >= x.not_before));
    return r && { id: r.id, recipient: r.recipient, keyEpoch: r.key_epoch, token: new Uint8Array(r.token) };
  }

  /** Recipients whose usable count is at or below the low-water mark (and who have tokens at all). */
  low(now = Date.now()): { recipient: string; usable: number }[] {
    const recipients = [...new Set(this.list().map((e) => e.recipient))];
    return recipients.map((recipient) => ({ recipient, usable: this.count(recipient, undefined, now) })).filter((e) => e.usable <= this.lowWater);
  }

  /** Forgets a recipient's unspent tokens (e.g. expired ones, so mail to it may use the SMTP fallback again). Returns how many. */
  forget(recipient: string, onlyExpired: boolean, now = Date.now()): number {
    const r = normalizeRecipient(recipient);
    if (!onlyExpired) return this.db.prepare("DELETE FROM tokens WHERE recipient = ? AND state = 'unspent'").run(r).changes;
    return this.db.prepare("DELETE FROM tokens WHERE recipient = ? AND state = 'unspent' AND expires IS NOT NULL AND expires <= ?").run(r, secondsOf(now))
      .changes;
  }
}

export interface WalletNotice {
  readonly recipient: string;
  readonly kind: 'expired' | 'not-yet' | 'expiring' | 'low';
  readonly text: string;
}

const isoS = (s: number | null) => (s === null ? '?' : new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'));

/**
 * What the sender should hear about its wallet before it sends (`client status`, `client
 * tokens`, the daemon's start): recipients whose tokens all expired (mail to them is refused
 * at submission until a new bundle is imported), whose tokens are not valid yet, that expire
 * within `soonS`, or that run low.
 */
export function walletNotices(w: Wallet, now = Date.now(), soonS = 7 * 86_400): WalletNotice[] {
  const out: WalletNotice[] = [];
  const t = Math.floor(now / 1000);
  for (const recipient of [...new Set(w.list().map((e) => e.recipient))]) {
    const s = w.state(recipient, undefined, now);
    if (s.usable === 0 && s.expired > 0 && s.notYet === 0)
      out.push({
        recipient,
        kind: 'expired',
        text: `all ${s.expired} token(s) for ${recipient} expired at ${isoS(s.lastExpired)}: mail to ${recipient} is refused at submission until you import a new bundle from them`,
      });
    else if (s.usable === 0 && s.notYet > 0)
      out.push({
        recipient,
        kind: 'not-yet',
        text: `the ${s.notYet} token(s) for ${recipient} become valid at ${isoS(s.firstValid)}; until then mail to ${recipient} is held back (450)`,
      });
    else if (s.usable > 0 && s.usableUntil !== null && s.usableUntil - t < soonS && s.notYet === 0)
      out.push({
        recipient,
        kind: 'expiring',
        text: `the ${s.usable} token(s) for ${recipient} expire at ${isoS(s.usableUntil)}; ask ${recipient} for a bundle of its next key epoch`,
      });
    else if (s.usable > 0 && s.usable <= w.lowWater)
      out.push({ recipient, kind: 'low', text: `only ${s.usable} token(s) left for ${recipient}; ask them for a new bundle` });
  }
  return out;
}
