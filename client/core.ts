/**
 * The client's working parts wired together, without sockets of its own: outbox + wallet +
 * routing + overlay sender + SMTP fallback worker + bounces. The daemon (daemon.ts) adds the SMTP
 * submission server, the overlay connection, config, logs, metrics and timers; tests drive
 * `tick(now)` directly.
 */
import { randomBytes } from 'node:crypto';
import type { DocumentBody, NodeEntry } from '../proto/pki/codec.ts';
import type { Uniform } from '../proto/mixing/params.ts';
import type { SphinxSuite } from '../proto/sphinx/index.ts';
import { normalizeRecipient } from '../proto/tokens/index.ts';
import type { MailboxItem } from '../proto/mailbox/index.ts';
import { buildBounce, deliverToMaildir, type FailedRecipient } from './bounce.ts';
import { addressesIn, headerValues, stripHeaders, type StripOptions } from './headers.ts';
import { MAX_RECIPIENTS_PER_TRANSACTION, relaySmtp, type RelayResult, type SmarthostConfig } from './smarthost.ts';
import { SmtpReply, type Accepted } from './smtp-server.ts';
import { Outbox, TokenSpentError, type NewRecipient, type RecipientRow } from './outbox.ts';
import { decideRoute, type RouteDecision, type RoutingPolicy } from './routing.ts';
import { Sender, planOverlay, type PacketSink, type SenderStats } from './sender.ts';
import type { RetransmitPolicy } from '../proto/mixing/retransmit.ts';
import { GatewayMemory } from './gateway-memory.ts';
import { Wallet } from './wallet.ts';

export interface Network {
  /**
   * The current verified document (null: none, overlay off); with `aheadMs`, the one the client
   * will route by that long from now, from the documents it holds now (for packets built ahead).
   */
  document(aheadMs?: number): DocumentBody | null;
  /** The client's home gateway for its mailbox (as of `aheadMs` from now). */
  home(aheadMs?: number): NodeEntry | null;
  readonly sink: PacketSink;
  readonly mailboxId: Uint8Array;
}

export interface CoreLog {
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
}

export interface ClientCoreOptions {
  readonly outboxPath: string;
  readonly suite: SphinxSuite;
  /** null: no overlay network (every recipient is routed by the fallback rules) */
  readonly network: Network | null;
  readonly policy: RoutingPolicy;
  readonly strip: StripOptions & { readonly messageIdFromDomain?: boolean };
  readonly smarthost: (SmarthostConfig & { readonly maxAttempts: number; readonly retryBaseMs: number }) | null;
  readonly bounceMaildir: string;
  readonly maxAttempts?: number;
  readonly timeout?: RetransmitPolicy;
  readonly cover?: boolean;
  /**
   * The sender's outbox commits (packets prepared ahead, sent, ACKed) fsync the WAL off the
   * event loop (client/outbox.ts); the daemon sets it. Off, they commit under FULL at once
   * (tests on a fake clock, which never yield to the thread pool).
   */
  readonly deferFsync?: boolean;
  readonly lowTokens?: number;
  /**
   * Every route, delay and send time is drawn from this: `csprngUniform` in the daemon, a seeded
   * generator in tests. Required, so no caller falls back to a predictable default.
   */
  readonly uniform: Uniform;
  readonly random?: (n: number) => Uint8Array;
  readonly log?: CoreLog;
  /** replaceable for tests */
  readonly relay?: (c: SmarthostConfig, from: string, to: readonly string[], raw: Uint8Array) => Promise<RelayResult>;
}

export interface CoreCounters {
  accepted: number;
  refused: number;
  smtpRelayed: number;
  smtpDeferred: number;
  bounced: number;
  delivered: number;
}

export class ClientCore {
  readonly outbox: Outbox;
  readonly wallet: Wallet;
  /** Domains known to have had a gateway (for refusing, not silently falling back, when it goes). */
  readonly gateways: GatewayMemory;
  readonly sender: Sender;
  readonly counters: CoreCounters = { accepted: 0, refused: 0, smtpRelayed: 0, smtpDeferred: 0, bounced: 0, delivered: 0 };
  private relaying = false;

  constructor(private readonly o: ClientCoreOptions) {
    this.outbox = new Outbox(o.outboxPath, { deferFsync: o.deferFsync });
    this.outbox.db.pragma('busy_timeout = 5000');
    this.wallet = new Wallet(this.outbox.db, o.lowTokens);
    this.gateways = new GatewayMemory(this.outbox.db);
    const net = o.network;
    this.sender = new Sender({
      outbox: this.outbox,
      suite: o.suite,
      sink: { send: (h, p) => net?.sink.send(h, p) },
      document: (ahead) => net?.document(ahead) ?? null,
      home: (ahead) => net?.home(ahead) ?? null,
      mailboxId: net?.mailboxId ?? new Uint8Array(32),
      uniform: o.uniform,
      random: o.random ?? ((n) => new Uint8Array(randomBytes(n))),
      maxAttempts: o.maxAttempts,
      timeout: o.timeout,
      cover: o.cover,
      log: o.log,
      onBounce: (b) => this.writeBounce(b.messageId, [{ recipient: b.recipient.address, reason: b.reason, status: '5.4.7' }]),
      onDelivered: () => this.counters.delivered++,
    });
  }

  close(): void {
    this.outbox.close();
  }

  get stats(): SenderStats {
    return this.sender.stats;
  }

  /** The routing decision for one recipient now. */
  route(address: string): RouteDecision {
    const doc = this.o.network?.document() ?? null;
    if (doc) this.gateways.remember(doc, Date.now());
    return decideRoute({
      recipient: address,
      document: doc,
      unspentTokens: (r, keys) => this.wallet.count(r, keys),
      heldOutsideWindow: (r, keys) => this.wallet.state(r, keys),
      policy: this.o.policy,
      gatewayHistory: (domain) => {
        const s = this.gateways.seen(domain);
        if (!s) return undefined;
        return s.source === 'document' ? `listed up to network epoch ${s.lastEpoch}` : 'the wallet holds tokens it issued';
      },
    });
  }

  /** RCPT TO check: refuse (550) what can go neither way. */
  checkRecipient(address: string): void {
    const d = this.route(address);
    if (d.path === 'refuse') {
      this.counters.refused++;
      if (d.lostGateway) {
        this.gateways.noteRefusal(d.lostGateway, Date.now());
        this.o.log?.warn({ recipient: d.recipient, domain: d.lostGateway, reason: d.reason }, "refused: the recipient's postmix gateway is missing");
      }
      throw d.temporary ? new SmtpReply(450, `4.7.1 <${address}>: ${d.reason}`) : new SmtpReply(550, `5.7.1 <${address}>: ${d.reason}`);
    }
    if (d.path === 'defer') {
      this.counters.refused++;
      throw new SmtpReply(451, `4.4.3 <${address}>: ${d.reason}`);
    }
    if (d.path === 'smtp' && !this.o.smarthost) {
      this.counters.refused++;
      throw new SmtpReply(550, `5.7.1 <${address}>: ${d.reason}, but no smarthost is configured`);
    }
  }

  /**
   * An overlay recipient's outbox row under `doc`: a token from the wallet (picked, spent when the
   * row is stored) and the fragment plan; or, when the message does not fit the overlay, why.
   */
  private overlayRow(raw: Uint8Array, d: Extract<RouteDecision, { path: 'overlay' }>, doc: DocumentBody): NewRecipient | { tooLarge: string } {
    const tok = this.wallet.pick(d.recipient, d.issuerKeys.length > 0 ? d.issuerKeys : undefined);
    const token = tok?.token ?? new Uint8Array(0);
    try {
      const plan = planOverlay(raw, d.recipient, token, doc.geometry);
      return { address: d.recipient, path: 'overlay', reason: d.reason, domain: d.domain, token, tokenId: tok?.id, ...plan };
    } catch (e) {
      return { tooLarge: `the message is too large for the overlay (${(e as Error).message})` };
    }
  }

  /** Stores a message durably with each recipient's decision. Returns the outbox id. */
  accept(mailFrom: string, recipients: readonly string[], submitted: Uint8Array, now = Date.now()): string {
    return this.submit(mailFrom, recipients, submitted, now).id;
  }

  /** As `accept`, with the path each recipient takes and why (the SMTP reply to DATA says it). */
  submit(mailFrom: string, recipients: readonly string[], submitted: Uint8Array, now = Date.now()): Accepted {
    if (recipients.length === 0) throw new SmtpReply(554, '5.5.1 No valid recipients');
    let raw = submitted;
    if (this.o.strip.received || this.o.strip.xMailer || this.o.strip.userAgent || this.o.strip.messageIdFromDomain) {
      const fromDomain = addressesIn(headerValues(submitted, 'from'))[0]?.split('@')[1] ?? (mailFrom.split('@')[1] || 'localhost.invalid');
      raw = stripHeaders(submitted, { ...this.o.strip, messageIdHost: this.o.strip.messageIdFromDomain ? fromDomain : '' });
    }
    const doc = this.o.network?.document() ?? null;
    for (let tries = 0; ; tries++) {
      const rows: NewRecipient[] = [];
      for (const a of [...new Set(recipients.map(normalizeRecipient))]) {
        this.checkRecipient(a);
        const d = this.route(a);
        if (d.path === 'overlay' && doc) {
          const row = this.overlayRow(raw, d, doc);
          if ('tooLarge' in row) {
            if (this.o.policy.overlayOnly || !this.o.smarthost) throw new SmtpReply(552, `5.3.4 <${a}>: ${row.tooLarge}`);
            rows.push({ address: a, path: 'smtp', reason: `${row.tooLarge}: relaying through the SMTP smarthost (not anonymous)` });
            continue;
          }
          rows.push(row);
        } else if (d.path === 'hold') {
          // nothing planned, nothing spent: that waits for the document (planHeld)
          rows.push({ address: a, path: 'overlay', held: true, reason: d.reason, domain: d.domain });
        } else if (d.path === 'smtp') {
          rows.push({ address: a, path: 'smtp', reason: d.reason });
        }
      }
      try {
        const id = this.outbox.accept({ mailFrom, raw, recipients: rows, now });
        this.counters.accepted++;
        for (const r of rows) {
          this.o.log?.info({ message: id, recipient: r.address, path: r.held ? 'held' : r.path, reason: r.reason }, 'accepted');
          if (r.path === 'overlay' && r.tokenId !== undefined) {
            const left = this.wallet.state(r.address);
            if (left.usable <= this.wallet.lowWater)
              this.o.log?.warn({ recipient: r.address, left: left.usable, expired: left.expired }, 'running low on delivery tokens for this recipient');
          }
        }
        return { id, recipients: rows.map((r) => ({ address: r.address, path: r.path, held: r.held === true, reason: r.reason })) };
      } catch (e) {
        // another session spent the token we picked: pick again (bounded)
        if (tries < 3 && e instanceof TokenSpentError) continue;
        throw e;
      }
    }
  }

  /** Runs due overlay stream events and (asynchronously) due SMTP relays. */
  tick(now = Date.now()): number {
    const doc = this.o.network?.document();
    if (doc && this.gateways.remember(doc, now)) {
      const lost = this.gateways.lost(doc).map((s) => s.domain);
      if (lost.length > 0)
        this.o.log?.warn(
          { epoch: doc.epoch, domains: lost, onGatewayLoss: this.o.policy.onGatewayLoss ?? 'refuse' },
          'postmix gateways missing from the network document: mail to these domains is refused (routing.on_gateway_loss)',
        );
    }
    if (doc) this.planHeld(doc);
    const n = this.sender.step(now);
    void this.relayDue(now);
    return n;
  }

  /**
   * Routes the recipients held for a network document by the one now usable: through the overlay
   * (token and fragments now), by SMTP if the document says so under the same rules as at
   * submission, or a bounce when they refuse it.
   */
  private planHeld(doc: DocumentBody): void {
    for (const r of this.outbox.heldRecipients()) {
      const d = this.route(r.address);
      if (d.path === 'hold' || d.path === 'defer') return; // no document after all
      let plan: Omit<NewRecipient, 'address'> | null = null;
      let bounce: string | null = null;
      if (d.path === 'overlay') {
        const row = this.overlayRow(this.outbox.raw(r.messageId), d, doc);
        if (!('tooLarge' in row)) plan = row;
        else if (this.o.policy.overlayOnly || !this.o.smarthost) bounce = row.tooLarge;
        else plan = { path: 'smtp', reason: `${row.tooLarge}: relaying through the SMTP smarthost (not anonymous)` };
      } else if (d.path === 'smtp') {
        if (this.o.smarthost) plan = { path: 'smtp', reason: d.reason };
        else bounce = `${d.reason}, but no smarthost is configured`;
      } else bounce = d.reason;
      if (bounce !== null) {
        if (this.outbox.markBounced(r.messageId, r.address, bounce)) this.writeBounce(r.messageId, [{ recipient: r.address, reason: bounce, status: '5.7.1' }]);
        continue;
      }
      try {
        if (this.outbox.planHeld(r.messageId, r.address, plan!))
          this.o.log?.info({ message: r.messageId, recipient: r.address, path: plan!.path, reason: plan!.reason, epoch: doc.epoch }, 'held message routed');
      } catch (e) {
        // the token was spent meanwhile: the next tick picks another
        if (!(e instanceof TokenSpentError)) throw e;
      }
    }
  }

  onMailboxItem(item: MailboxItem, now = Date.now()): void {
    this.sender.onMailboxItem(item, now);
  }

  /**
   * Relays due SMTP-fallback recipients (one run at a time). Resolves when this run is done.
   * A message's due recipients go in as few transactions as the smarthost takes (up to
   * MAX_RECIPIENTS_PER_TRANSACTION each; a 452 for some defers only those), and the ones that
   * fail for good in this run get one DSN for the message listing them all.
   */
  async relayDue(now = Date.now()): Promise<void> {
    if (this.relaying || !this.o.smarthost) return;
    this.relaying = true;
    const sh = this.o.smarthost;
    const relay = this.o.relay ?? relaySmtp;
    try {
      const byMessage = new Map<string, RecipientRow[]>();
      for (const r of this.outbox.dueSmtp(now, 10_000)) byMessage.set(r.messageId, [...(byMessage.get(r.messageId) ?? []), r]);
      for (const [messageId, rows] of byMessage) {
        const m = this.outbox.message(messageId)!;
        const raw = this.outbox.raw(messageId);
        const failed: FailedRecipient[] = [];
        for (let i = 0; i < rows.length; i += MAX_RECIPIENTS_PER_TRANSACTION) {
          const batch = rows.slice(i, i + MAX_RECIPIENTS_PER_TRANSACTION);
          const res = await relay(
            sh,
            m.mailFrom,
            batch.map((r) => r.address),
            raw,
          );
          const refused = new Map((res.refused ?? []).map((x) => [x.address.toLowerCase(), x]));
          for (const r of batch) {
            const x = refused.get(r.address.toLowerCase());
            const out = x ? { ok: false as const, permanent: x.permanent, error: x.error } : res;
            if (out.ok) {
              this.outbox.markDelivered(messageId, r.address);
              this.counters.smtpRelayed++;
              this.counters.delivered++;
              this.o.log?.info({ message: messageId, recipient: r.address, response: res.ok ? res.response : '' }, 'relayed through the smarthost');
            } else if (out.permanent || r.attempts + 1 >= sh.maxAttempts) {
              const reason = out.permanent
                ? `the smarthost refused it: ${out.error}`
                : `the smarthost could not be reached after ${r.attempts + 1} attempts: ${out.error}`;
              if (this.outbox.markBounced(messageId, r.address, reason))
                failed.push({ recipient: r.address, reason, status: out.permanent ? '5.0.0' : '4.4.1' });
            } else {
              const next = Date.now() + sh.retryBaseMs * 2 ** Math.min(r.attempts, 8);
              this.outbox.smtpDeferred(messageId, r.address, next, out.error);
              this.counters.smtpDeferred++;
              this.o.log?.warn({ message: messageId, recipient: r.address, err: out.error, next: new Date(next).toISOString() }, 'smarthost deferred');
            }
          }
        }
        if (failed.length > 0) this.writeBounce(messageId, failed);
      }
    } finally {
      this.relaying = false;
    }
  }

  private writeBounce(messageId: string, failed: readonly FailedRecipient[]): void {
    this.counters.bounced += failed.length;
    const recipients = failed.map((f) => f.recipient);
    try {
      const m = this.outbox.message(messageId);
      const raw = this.outbox.raw(messageId);
      const file = deliverToMaildir(this.o.bounceMaildir, buildBounce({ to: m?.mailFrom ?? '', failed, original: raw, messageId }));
      this.o.log?.warn({ message: messageId, recipients, reasons: failed.map((f) => f.reason), file }, 'bounce written');
    } catch (e) {
      this.o.log?.warn({ message: messageId, recipients, err: String(e) }, 'could not write the bounce');
    }
  }
}
