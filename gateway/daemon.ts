/**
 * The gateway (docs/gateway.md): the last hop for its domains. A hop (runtime/hop/hop-node.ts:
 * link, Sphinx pipeline, epochs, keys, replay tags, metrics) in the gateway role:
 *
 *   final-hop packet for MAIL_QUEUE_ID → Intake (token, reassembly, durable queue) under group
 *     commit (fragments arriving within [intake] group_commit_wait_ms share one fsync'd
 *     transaction) → once that commit returned, the ACK through the fragment's SURB to the
 *     SURB's first hop; a decoy (a client's payload-stream cover) goes the same way, through the
 *     same commit and hop delay, and its answer through its SURB is a reply like an ACK;
 *   for any other queue → the client mailbox (runtime/mailbox/server.ts), SURB replies only (a
 *     plain delivery to a mailbox is refused: one kind of item), which writes one fixed-size
 *     frame per tick to each `/postmix/mailbox/3` subscriber;
 *   forward (a mix's loop cover passes a gateway on its way back into layer 1): the hop node;
 *   its own loop cover (runtime/hop/loop-cover.ts) at λ_G of the document, layer 1 → … →
 *   layer L → itself, so that what leaves it is not only ACKs and forwarded loops.
 *
 * Beside the hop: the HandoffWorker (queue → MX over SMTP/LMTP), the token issuance endpoint
 * (HTTP), and the role's housekeeping in each epoch tick. Its descriptor says role gateway, the
 * served domains and the token issuer key; clients may always connect (for their mailboxes).
 */
import type { Logger } from 'pino';
import { isMailQueue, mailboxItemOf } from '../proto/mailbox/index.ts';
import type { Geometry, HopDeliver, SurbUseResult } from '../proto/sphinx/index.ts';
import { useFastestTokenChecks, type IssuerKeys } from '../proto/tokens/index.ts';
import { hex } from '../proto/util/bytes.ts';
import { listenError } from '../runtime/errors.ts';
import { HopNode, type HopStartOptions } from '../runtime/hop/hop-node.ts';
import { MailboxServer } from '../runtime/mailbox/server.ts';
import { issuanceLimits, loadOrCreateIssuer, rotationPolicy, type GatewayConfig } from './config.ts';
import { HandoffWorker } from './handoff.ts';
import { checkMxTls, mxTlsSettingsOf } from './mx-tls.ts';
import { GroupCommit } from './group-commit.ts';
import { PoolReplies, PoolTokenChecks } from './crypto-offload.ts';
import { Intake, replyOf, type IntakeResult } from './intake.ts';
import { startIssuanceServer, type IssuanceServer } from './issuance.ts';
import { bump } from '../runtime/metrics.ts';
import { LoopCover } from '../runtime/hop/loop-cover.ts';
import { registerLoopMetrics } from '../runtime/hop/loop-metrics.ts';
import { bytesEqual } from '../proto/util/bytes.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { ackStatusLabel, GatewayMetrics, newGatewayCounters, type GatewayCounters } from './metrics.ts';
import { GatewayStore } from './store.ts';

export type GatewayOptions = HopStartOptions<GatewayConfig>;

export class Gateway {
  readonly hop: HopNode;
  readonly log: Logger;
  readonly config: GatewayConfig;
  readonly store: GatewayStore;
  readonly issuer: IssuerKeys;
  readonly intake: Intake;
  readonly commits: GroupCommit;
  /** Token checks and ACK packets on the `[crypto] workers` pool (this thread without one, or while closing). */
  private readonly tokenChecks: PoolTokenChecks;
  private readonly replies: PoolReplies;
  readonly handoff: HandoffWorker;
  readonly mailboxes: MailboxServer;
  readonly counters: GatewayCounters = newGatewayCounters();
  readonly metrics: GatewayMetrics;
  /** The gateway's own loop cover at λ_G of the document (none sent while λ_G = 0). */
  readonly loops: LoopCover;
  private issuance: IssuanceServer | undefined;
  private closed = false;

  private constructor(o: GatewayOptions) {
    const c = o.config;
    const f = c.file;
    this.config = c;
    this.log = o.logger;
    this.hop = new HopNode({
      ...o,
      metricsPrefix: 'postmix_gateway',
      role: {
        descriptor: () => ({
          role: 'gateway',
          gateway: {
            domains: f.gateway.domains,
            // one POPRF issuer key per gateway; recipients' key epochs are inside the POPRF info
            issuerKeys: [{ keyEpoch: 0, publicKey: this.issuer.publicKey }],
            keyDirectoryUrl: f.issuance.public_url,
            policy: 'token-required',
          },
        }),
        // clients connect to fetch their mailboxes
        acceptsClients: () => true,
        // the mail queue, SURB replies for a mailbox, and its own loops; a plain delivery to a
        // mailbox would be a second kind of item there (docs/spec/mailbox.md): dropped on arrival
        admitDeliver: (r) => isMailQueue(r.queueId) || mailboxItemOf(r) !== null || (r.surbId === undefined && bytesEqual(r.queueId, this.loops.queueId)),
        // a fragment is committed as it arrives; its ACK is what waits the hop delay (below)
        deliverAtOnce: (r) => isMailQueue(r.queueId),
        deliver: (r, at) => this.deliver(r, at.geometry),
        serve: (link) => this.mailboxes.serve(link),
        afterRound: (t) => this.housekeeping(t),
        // what waits for its commit is committed and answered while the link can still carry the ACKs
        drained: () => this.commits.settle(),
        // the issuance endpoint starts after the link: /readyz waits for it too
        readyChecks: (): Record<string, true | string> =>
          f.issuance.enabled ? { issuance: this.issuance !== undefined || 'the token issuance endpoint is not up' } : {},
      },
    });
    const nowMs = () => this.hop.now() * 1000;
    this.issuer = loadOrCreateIssuer(c.issuerSeedPath);
    this.store = new GatewayStore(c.dbPath, { rotation: rotationPolicy(f) });
    this.intake = new Intake(this.store, {
      domains: f.gateway.domains,
      issuer: this.issuer,
      maxMessageBytes: f.intake.max_message_bytes,
      reassemblyTtlMs: f.intake.reassembly_ttl_s * 1000,
      ackUnknownRecipient: f.intake.ack_unknown_recipient,
      now: nowMs,
    });
    this.tokenChecks = new PoolTokenChecks(() => this.hop.cryptoPool, this.issuer);
    this.replies = new PoolReplies(
      () => (this.closed ? undefined : this.hop.cryptoPool),
      (err) => this.log.error({ err: String(err) }, 'ACK not sent'),
    );
    this.commits = new GroupCommit(this.store, this.intake, {
      checks: (recipient, token, key, done) => this.tokenChecks.check(recipient, token, key, done),
      maxWaitMs: f.intake.group_commit_wait_ms,
      maxFragments: f.intake.group_commit_max_fragments,
      fsync: f.intake.group_commit_fsync,
      onError: (err, what, fragments) =>
        this.log.error(
          { err: String(err), what, fragments },
          what === 'commit' ? 'intake commit failed: its fragments get no ACK (senders resend)' : 'intake error',
        ),
    });
    this.mailboxes = new MailboxServer({
      store: this.store,
      ttlMs: f.mailbox.ttl_s * 1000,
      maxItems: f.mailbox.max_items,
      payloadSize: () => this.hop.geometry.payloadSize,
      mixing: () => this.hop.view.current?.body.mixing,
      now: nowMs,
      log: this.log,
    });
    this.metrics = new GatewayMetrics(this.hop.registry, {
      counters: this.counters,
      intake: () => this.intake.counters,
      commits: () => this.commits.counters,
      mailbox: () => this.mailboxes.counters,
      queueDepth: () => this.store.queueDepth(),
      partials: () => this.store.partialCount(),
      spentTokens: () => this.store.spentCount(),
    });
    const hop = this.hop;
    const loopRtt = registerLoopMetrics(hop.registry, 'postmix_gateway', () => ({
      ...this.loops.stats,
      ratio: this.loops.ratio,
      inFlight: this.loops.inFlight,
    }));
    this.loops = new LoopCover({
      nodeId: hop.identity.nodeId,
      role: 'gateway',
      document: () => hop.view.documentAt(hop.now()),
      send: (first, packet) => {
        const p = hop.view.resolveNext(first.nodeId);
        return p !== undefined && hop.link.send(p.peerId, packet);
      },
      // the mix node's [loops] defaults (automatic timeout from μ and L)
      timeoutS: 0,
      window: 200,
      alertRatio: 0.5,
      minSamples: 10,
      log: this.log,
      onRoundTrip: (s) => loopRtt.observe(s),
      uniform: csprngUniform,
    });
    this.handoff = new HandoffWorker({
      store: this.store,
      mx: {
        host: f.mx.host,
        port: f.mx.port,
        protocol: f.mx.protocol,
        starttls: f.mx.starttls,
        tlsVerify: f.mx.tls_verify,
        heloName: f.mx.helo_name,
        envelopeFrom: f.mx.envelope_from,
      },
      baseDelayMs: f.mx.retry_base_s * 1000,
      maxDelayMs: f.mx.retry_max_s * 1000,
      maxAgeMs: f.mx.max_age_s * 1000,
      recovery: f.mx.recovery,
      concurrency: f.mx.concurrency,
      now: nowMs,
      log: this.log,
      onDelivered: (_r, sendS, queuedS) => {
        this.metrics.handoffLatency.observe(sendS);
        this.metrics.queueLatency.observe(queuedS);
      },
      onFailure: (_r, _e, permanent) => this.counters.handoffFailures[permanent ? 'permanent' : 'transient']++,
    });
  }

  /** Starts a gateway: keys, stores, link (with the mailbox protocol), issuance, hand-off, first directory round. */
  static async start(o: GatewayOptions): Promise<Gateway> {
    const g = new Gateway(o);
    try {
      // token checks on libsodium before the first fragment can arrive; a fallback is only slower
      const tokenChecks = await useFastestTokenChecks();
      if (tokenChecks.fallbackReason) g.log.warn(tokenChecks.fallbackReason);
      await g.hop.listen();
      const f = g.config.file;
      if (f.issuance.enabled)
        g.issuance = await startIssuanceServer(g.store, g.issuer, f.issuance.host, f.issuance.port, {
          limits: issuanceLimits(f),
          onIssued: (n) => (g.counters.tokensIssued += n),
          now: () => g.hop.now() * 1000,
          log: g.log,
        }).catch((e: unknown) => {
          throw listenError(e, `issuance endpoint ${f.issuance.host}:${f.issuance.port}`);
        });
      g.handoff.start();
      g.mailboxes.start();
      g.log.info(
        {
          ...g.hop.describe(),
          domains: f.gateway.domains,
          issuerPublicKey: hex(g.issuer.publicKey),
          mx: `${f.mx.protocol}://${f.mx.host}:${f.mx.port}`,
          issuance: g.issuance ? `http://${f.issuance.host}:${g.issuance.port}` : 'off',
          tokenChecks: tokenChecks.evaluator.name,
        },
        'gateway listening',
      );
      // said once at start: what [mx] starttls / tls_verify will do against this MX (not awaited)
      void checkMxTls(mxTlsSettingsOf(f.mx)).then((v) => {
        const line = { mx: `${f.mx.protocol}://${f.mx.host}:${f.mx.port}`, starttls: f.mx.starttls, tlsVerify: f.mx.tls_verify };
        if (v.level === 'ok') g.log.info(line, `MX TLS: ${v.text}`);
        else if (v.level === 'warn') g.log.warn(line, `MX TLS: ${v.text}`);
        else g.log.error(line, `MX TLS: ${v.text}`);
      });
      await g.hop.followEpochs();
      g.loops.start();
    } catch (e) {
      await g.close().catch(() => {});
      throw e;
    }
    return g;
  }

  get issuancePort(): number | undefined {
    return this.issuance?.port;
  }

  // ---- final hop ----

  private deliver(r: HopDeliver, geometry: Geometry): void {
    if (!isMailQueue(r.queueId)) {
      // its own loop, back: it ends here (a client's mailbox id never equals it: another hash domain)
      if (r.surbId === undefined && bytesEqual(r.queueId, this.loops.queueId)) return void this.loops.onReturn(r.payload);
      const item = mailboxItemOf(r);
      if (item) this.mailboxes.put(r.queueId, item);
      return;
    }
    // the hop delay of this fragment, from its arrival: its ACK leaves then (or at its commit, if later)
    const due = performance.now() + this.hop.hopDelayMs();
    this.commits.submit(r.payload, (res) => this.answer(res, geometry, due));
  }

  /** A fragment's decision, called only once the transaction that holds it is durable; what it sends leaves at `due`. */
  private answer(res: IntakeResult, geometry: Geometry, due: number): void {
    if (res.kind === 'drop') {
      this.log.debug({ reason: res.reason }, 'mail payload dropped');
      return;
    }
    // label values are names (token-refused), not the wire's numbers; a decoy's answer is not an ACK
    if (res.kind === 'ack') bump(this.counters.acks, ackStatusLabel(res.status));
    const completed = res.kind === 'ack' ? res.handoffId : undefined;
    if (completed) this.log.info({ handoffId: completed }, 'message complete and queued');
    // the hand-off to the MX starts when the ACK leaves, not at the commit: the MX link would
    // otherwise show which arrival completed a message, milliseconds after it
    const then = completed ? () => this.handoff.wake() : undefined;
    // built only now (the fragment, and message, are committed), on the pool (the LIONESS over
    // the payload), under the geometry the packet came in with; held until the hop delay is over.
    // A decoy's answer is built and held the same way, so it leaves as an ACK would.
    const reply = replyOf(res);
    if (!reply) return this.emitAnswer(undefined, due, then);
    this.replies.build(geometry, reply.surb, reply.payload, (p) => this.emitAnswer(p, due, then));
  }

  /** The ACK (or a decoy's answer) built from its SURB (undefined: none to send) leaves at `due`. */
  private emitAnswer(p: SurbUseResult | undefined, due: number, then: (() => void) | undefined): void {
    if (p && !p.ok) bump(this.counters.acksUnsent, p.reason);
    const ack = p?.ok ? p : undefined;
    const wait = due - performance.now();
    if (wait <= 0) this.counters.acksPastDelay++;
    const unsent = this.hop.emitLater(ack?.firstHop, ack?.packet, wait, then);
    if (unsent && ack) bump(this.counters.acksUnsent, unsent);
  }

  // ---- epochs ----

  /** One round of the epoch machinery (also called directly by tests that move the clock). */
  tick(): Promise<void> {
    return this.hop.tick();
  }

  private housekeeping(t: number): void {
    const nowMs = t * 1000;
    const expired = this.store.purgeExpiredPartials(nowMs);
    if (expired > 0) this.log.info({ expired }, 'incomplete messages expired');
    this.mailboxes.expire();
    this.store.purge({ deliveredBefore: nowMs - this.config.file.mx.keep_delivered_s * 1000 });
    this.store.purgeRate(Math.floor(nowMs / 3_600_000) - 1);
    const forgot = this.store.purgeOldSpent(nowMs);
    if (forgot.spent + forgot.epochs > 0) this.log.info(forgot, 'key epochs past their grace or revoked: their spent tokens forgotten');
  }

  /**
   * Graceful shutdown: no more mailbox frames, then the hop's (stop taking frames, deliver what
   * falls due within most of the grace, close the link), then the hand-off pass in progress, the
   * issuance endpoint and the store.
   */
  async close(graceMs = this.config.file.gateway.shutdown_grace_ms): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.loops.stop();
    this.mailboxes.close();
    const { drained, dropped } = await this.hop.close(graceMs);
    // (the hop flushed the group commit before its link closed; anything later is committed, not answered)
    this.commits.close();
    await this.handoff.stop();
    await this.issuance?.close();
    this.store.close();
    this.log.info({ drained, dropped }, 'gateway stopped');
  }
}
