/**
 * The token wallet, in the outbox database (so a message and the token it spends are written
 * in one transaction). A token is imported from a bundle (docs/spec/tokens.md), picked for a
 * message at intake, and marked spent by Outbox.accept together with the message.
 */
import type Database from 'better-sqlite3';
import { encodeToken, normalizeRecipient, parseBundle } from '../proto/tokens/index.ts';

export interface WalletEntry {
  readonly recipient: string;
  readonly keyEpoch: number;
  readonly unspent: number;
  readonly spent: number;
}

export interface PickedToken {
  readonly id: number;
  readonly recipient: string;
  readonly keyEpoch: number;
  readonly token: Uint8Array;
}

export interface ImportResult {
  readonly recipient: string;
  readonly keyEpoch: number;
  readonly added: number;
  readonly duplicates: number;
}

/** Below this many unspent tokens for a recipient, `list` and the logs warn. */
export const DEFAULT_LOW_WATER = 3;

function issuerOk(pk: Buffer, keys: readonly Uint8Array[] | undefined): boolean {
  return !keys || keys.some((k) => pk.equals(Buffer.from(k)));
}

export class Wallet {
  constructor(
    private readonly db: Database.Database,
    readonly lowWater = DEFAULT_LOW_WATER,
  ) {}

  /** Imports a bundle (JSON text). Throws BundleError on a malformed bundle. */
  importBundle(text: string, now = Date.now()): ImportResult {
    const b = parseBundle(text);
    const ins = this.db.prepare('INSERT OR IGNORE INTO tokens (recipient, key_epoch, issuer_pk, token, imported_at) VALUES (?, ?, ?, ?, ?)');
    let added = 0;
    this.db
      .transaction(() => {
        for (const t of b.tokens) added += ins.run(b.recipient, b.keyEpoch, Buffer.from(b.issuerPublicKey), Buffer.from(encodeToken(t)), now).changes;
      })
      .immediate();
    return { recipient: b.recipient, keyEpoch: b.keyEpoch, added, duplicates: b.tokens.length - added };
  }

  /** Per recipient and key epoch: unspent and spent counts. */
  list(): WalletEntry[] {
    return (
      this.db
        .prepare(
          "SELECT recipient, key_epoch, SUM(state = 'unspent') AS unspent, SUM(state = 'spent') AS spent FROM tokens GROUP BY recipient, key_epoch ORDER BY recipient, key_epoch",
        )
        .all() as { recipient: string; key_epoch: number; unspent: number; spent: number }[]
    ).map((r) => ({
      recipient: r.recipient,
      keyEpoch: r.key_epoch,
      unspent: r.unspent,
      spent: r.spent,
    }));
  }

  /** Unspent tokens for a recipient, optionally only those issued under one of `issuerKeys`. */
  count(recipient: string, issuerKeys?: readonly Uint8Array[]): number {
    const rows = this.db
      .prepare("SELECT issuer_pk, COUNT(*) AS n FROM tokens WHERE recipient = ? AND state = 'unspent' GROUP BY issuer_pk")
      .all(normalizeRecipient(recipient)) as { issuer_pk: Buffer; n: number }[];
    return rows.filter((r) => issuerOk(r.issuer_pk, issuerKeys)).reduce((a, r) => a + r.n, 0);
  }

  /**
   * An unspent token for `recipient` (newest key epoch first; only under `issuerKeys` when given).
   * It is not marked here: Outbox.accept spends it atomically with the message.
   */
  pick(recipient: string, issuerKeys?: readonly Uint8Array[]): PickedToken | undefined {
    const rows = this.db
      .prepare("SELECT id, recipient, key_epoch, issuer_pk, token FROM tokens WHERE recipient = ? AND state = 'unspent' ORDER BY key_epoch DESC, id")
      .all(normalizeRecipient(recipient)) as { id: number; recipient: string; key_epoch: number; issuer_pk: Buffer; token: Buffer }[];
    const r = rows.find((x) => issuerOk(x.issuer_pk, issuerKeys));
    return r && { id: r.id, recipient: r.recipient, keyEpoch: r.key_epoch, token: new Uint8Array(r.token) };
  }

  /** Recipients whose unspent count is at or below the low-water mark. */
  low(): WalletEntry[] {
    const per = new Map<string, WalletEntry>();
    for (const e of this.list()) {
      const p = per.get(e.recipient);
      per.set(e.recipient, p ? { ...p, unspent: p.unspent + e.unspent, spent: p.spent + e.spent } : e);
    }
    return [...per.values()].filter((e) => e.unspent <= this.lowWater);
  }
}
