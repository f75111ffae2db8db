/**
 * Which mail domains have had a postmix gateway, as far as this client knows: every gateway
 * domain of every network document it has used, and the domains of the recipients its wallet
 * holds tokens for (a gateway issued those). Kept in the outbox database, so a restart or a
 * directory that cannot be reached does not make the client forget.
 *
 * Why: a domain whose gateway vanishes from the document (it missed an upload, an attacker keeps
 * it out, or blocks the client's document fetches altogether) would otherwise fall back to the
 * SMTP smarthost, in the clear as far as anonymity goes, without the user having chosen that.
 * Routing refuses such recipients instead (routing.ts, `onGatewayLoss`), logs it, and
 * `postmix client status` lists the domains.
 */
import type Database from 'better-sqlite3';
import type { DocumentBody } from '../proto/pki/codec.ts';

export interface GatewaySighting {
  readonly domain: string;
  /** 'document': listed in a network document; 'tokens': only known from the wallet's tokens */
  readonly source: 'document' | 'tokens';
  readonly firstEpoch: number;
  readonly lastEpoch: number;
  /** ms */
  readonly lastSeenAt: number;
  /** recipients refused because the gateway was missing */
  readonly refused: number;
  readonly lastRefusedAt: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS gateway_domains (
  domain TEXT PRIMARY KEY,
  first_epoch INTEGER NOT NULL,
  last_epoch INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  refused INTEGER NOT NULL DEFAULT 0,
  last_refused_at INTEGER
) WITHOUT ROWID;
`;

interface Raw {
  domain: string;
  first_epoch: number;
  last_epoch: number;
  last_seen_at: number;
  refused: number;
  last_refused_at: number | null;
}

const row = (r: Raw): GatewaySighting => ({
  domain: r.domain,
  source: r.last_epoch >= 0 ? 'document' : 'tokens',
  firstEpoch: r.first_epoch,
  lastEpoch: r.last_epoch,
  lastSeenAt: r.last_seen_at,
  refused: r.refused,
  lastRefusedAt: r.last_refused_at,
});

const fromTokens = (domain: string): GatewaySighting => ({
  domain,
  source: 'tokens',
  firstEpoch: -1,
  lastEpoch: -1,
  lastSeenAt: 0,
  refused: 0,
  lastRefusedAt: null,
});

export class GatewayMemory {
  private lastEpoch = -1;

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
  }

  /** Records the gateway domains of a document (once per epoch); true when it was a new epoch. */
  remember(doc: DocumentBody, now: number): boolean {
    if (doc.epoch === this.lastEpoch) return false;
    const up = this.db.prepare(
      `INSERT INTO gateway_domains (domain, first_epoch, last_epoch, last_seen_at) VALUES (?, ?, ?, ?)
       ON CONFLICT(domain) DO UPDATE SET last_epoch = MAX(last_epoch, excluded.last_epoch), last_seen_at = excluded.last_seen_at`,
    );
    this.db
      .transaction(() => {
        for (const g of doc.gateways) for (const d of g.gateway?.domains ?? []) up.run(d.toLowerCase(), doc.epoch, doc.epoch, now);
      })
      .immediate();
    this.lastEpoch = doc.epoch;
    return true;
  }

  /** What the client knows of a gateway for `domain`: a document listed one, or the wallet holds tokens issued there. */
  seen(domain: string): GatewaySighting | undefined {
    const d = domain.toLowerCase();
    const r = this.db.prepare('SELECT * FROM gateway_domains WHERE domain = ?').get(d) as Raw | undefined;
    if (r) return row(r);
    return this.tokenDomains().includes(d) ? fromTokens(d) : undefined;
  }

  /** Domains of the recipients the wallet holds tokens for (the wallet's table, in the same database). */
  private tokenDomains(): string[] {
    return (this.db.prepare("SELECT DISTINCT lower(substr(recipient, instr(recipient, '@') + 1)) AS d FROM tokens").all() as { d: string }[]).map((x) => x.d);
  }

  noteRefusal(domain: string, now: number): void {
    this.db
      .prepare(
        `INSERT INTO gateway_domains (domain, first_epoch, last_epoch, last_seen_at, refused, last_refused_at) VALUES (?, -1, -1, 0, 1, ?)
         ON CONFLICT(domain) DO UPDATE SET refused = refused + 1, last_refused_at = excluded.last_refused_at`,
      )
      .run(domain.toLowerCase(), now);
  }

  /** Domains seen with a gateway that `doc` does not list (every one when there is no document). */
  lost(doc: DocumentBody | null): GatewaySighting[] {
    const served = new Set((doc?.gateways ?? []).flatMap((g) => g.gateway?.domains ?? []).map((d) => d.toLowerCase()));
    const known = (this.db.prepare('SELECT * FROM gateway_domains ORDER BY domain').all() as Raw[]).map(row);
    const listed = new Set(known.map((k) => k.domain));
    const all = [
      ...known,
      ...this.tokenDomains()
        .filter((d) => !listed.has(d))
        .map(fromTokens),
    ];
    return all.filter((s) => !served.has(s.domain)).sort((a, b) => (a.domain < b.domain ? -1 : 1));
  }
}
