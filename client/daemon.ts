/**
 * `postmix client run`: the client daemon. SMTP intake on loopback, the durable outbox, the
 * overlay (client/network.ts: the document, the link to layer 1, the mailbox subscription) and
 * the sender's Poisson streams over it when a document is available, the SMTP fallback worker,
 * Prometheus metrics and /healthz, /readyz (loopback unless allowed), pino logs, graceful shutdown.
 */
import type { Logger } from 'pino';
import { fastestSuite } from '../proto/sphinx/index.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { isLoopback } from '../runtime/daemon.ts';
import { ConfigError, listenError } from '../runtime/errors.ts';
import { readiness as checkAll } from '../runtime/health.ts';
import { resolveMetricsAccess } from '../runtime/metrics-config.ts';
import { newRegistry, startMetricsServer, type MetricsServer } from '../runtime/metrics.ts';
import { privateDir } from '../runtime/private-files.ts';
import { outboxPath, type ClientConfig } from './config.ts';
import { walletNotices } from './wallet.ts';
import { ClientCore, type Network } from './core.ts';
import { registerClientMetrics } from './metrics.ts';
import { DocumentCache } from '../runtime/pki/client.ts';
import { DocumentFollower } from './document-follower.ts';
import { cachedDocument, fetchNetworkDocument, loadMailboxId, OverlayConnection } from './network.ts';
import { startSubmissionServer, type SubmissionServer } from './smtp-server.ts';
import { checkTlsKeys, submissionTls } from './tls.ts';

export interface RunningClient {
  readonly core: ClientCore;
  readonly smtpPort: number;
  readonly metricsPort: number | null;
  stop(): Promise<void>;
}

export interface RunOptions {
  readonly log: Logger;
  /**
   * The overlay. Absent: connect as the config says ([network]); an OverlayConnection: that
   * one (the caller closes it); another Network (an in-process test network, whose mailbox the
   * caller feeds to `core.onMailboxItem`); null: none, fallback rules only.
   */
  readonly network?: Network | OverlayConnection | null;
  /** Upper bound between scheduler wake-ups, ms (default 1000). */
  readonly maxSleepMs?: number;
}

/** The listeners' address rules; returns the metrics bearer token, if one is configured. */
export function checkListen(cfg: ClientConfig): { metricsBearerToken: string | undefined } {
  if (!isLoopback(cfg.smtp.host) && !cfg.smtp.allow_remote)
    throw new ConfigError(`smtp.host ${cfg.smtp.host} is not loopback; set smtp.allow_remote = true to listen there`);
  if (!isLoopback(cfg.smtp.host) && !cfg.smtp.user) throw new ConfigError('smtp.user and smtp.password are required when smtp.host is not loopback');
  checkTlsKeys(cfg);
  return { metricsBearerToken: resolveMetricsAccess(cfg.metrics, 'client config', process.cwd()).bearerToken };
}

/**
 * The overlay the config describes (null when it names no document): with the cached document
 * if it still verifies, else the newest the authorities publish, else none yet. Without one the
 * overlay is up all the same, the follower keeps asking, and overlay recipients are held.
 */
async function connectOverlay(cfg: ClientConfig, log: Logger): Promise<OverlayConnection | null> {
  if (!cfg.network.document) return null;
  if (cfg.network.authorities.length === 0) {
    log.warn('network.authorities is empty: no network document can be verified, so the overlay is off');
    return null;
  }
  let document = cachedDocument(cfg);
  if (!document && cfg.network.authority_urls.length > 0) {
    try {
      document = await fetchNetworkDocument(cfg, 'latest');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'no network document from the authorities yet; the client keeps asking');
    }
  }
  if (!document) log.warn('no valid network document: overlay recipients are held until one verifies');
  return OverlayConnection.open({ document, mailboxId: loadMailboxId(cfg.data_dir), home: cfg.network.home_gateway, log });
}

/**
 * /readyz's document check: the overlay holds a verified document for the current epoch. A
 * client configured without an overlay (fallback only) has nothing to wait for.
 */
function overlayDocument(network: Network | OverlayConnection | null | undefined): true | string {
  if (!(network instanceof OverlayConnection)) return true;
  if (!network.current) return 'no verified network document yet';
  return network.stale ? `routing by the document for epoch ${network.current.body.epoch}; the current one has not come` : true;
}

export async function runClient(cfg: ClientConfig, ro: RunOptions): Promise<RunningClient> {
  const { metricsBearerToken } = checkListen(cfg);
  const log = ro.log;
  privateDir(cfg.data_dir);
  // with allow_remote: the STARTTLS certificate (made self-signed in data_dir when none is configured)
  const tls = submissionTls(cfg, log);
  if (tls)
    log.info(
      { cert: tls.certFile, sha256: tls.fingerprint, self_signed: tls.generated },
      `smtp: STARTTLS offered, AUTH only after it; certificate SHA-256 fingerprint ${tls.fingerprint}`,
    );
  const sh = cfg.smarthost;
  // ours to close when we opened it
  const own = ro.network === undefined ? await connectOverlay(cfg, log) : null;
  const network = ro.network === undefined ? own : ro.network;
  const closers: (() => Promise<void> | void)[] = [];
  const stopAll = async () => {
    for (const c of closers.splice(0).reverse()) await c();
  };
  if (own) closers.push(() => own.close());
  const core = new ClientCore({
    outboxPath: outboxPath(cfg),
    suite: fastestSuite,
    network,
    policy: {
      overlayOnly: cfg.routing.overlay_only,
      overlayOnlyRecipients: cfg.routing.overlay_only_recipients,
      forceSmtp: cfg.routing.force_smtp,
      onGatewayLoss: cfg.routing.on_gateway_loss,
      noDocument: cfg.routing.no_document,
    },
    strip: {
      received: cfg.strip.received,
      xMailer: cfg.strip.x_mailer,
      userAgent: cfg.strip.user_agent,
      messageIdFromDomain: cfg.strip.message_id_host,
    },
    smarthost: sh.host
      ? {
          host: sh.host,
          port: sh.port,
          secure: sh.secure,
          requireTls: sh.require_tls,
          user: sh.user || undefined,
          password: sh.password || undefined,
          insecureTls: sh.insecure_tls,
          maxAttempts: sh.max_attempts,
          retryBaseMs: sh.retry_base_ms,
        }
      : null,
    bounceMaildir: cfg.bounce.maildir,
    maxAttempts: cfg.overlay.max_attempts,
    timeout: { factor: cfg.overlay.timeout_factor, marginMs: cfg.overlay.timeout_margin_ms, maxMs: cfg.overlay.timeout_max_s * 1000 },
    cover: cfg.overlay.cover,
    // the schedule's event loop never waits for the disk (client/sender.ts: packets built ahead)
    deferFsync: true,
    lowTokens: cfg.overlay.low_tokens_warning,
    uniform: csprngUniform,
    log,
  });
  closers.unshift(() => core.close());
  if (!network) log.warn('no overlay network attached: every recipient follows the fallback rules (SMTP smarthost or refusal)');
  for (const n of walletNotices(core.wallet)) log.warn({ recipient: n.recipient, kind: n.kind }, n.text);
  const active = core.outbox.activeMessages().length;
  if (active > 0) log.info({ messages: active, smtpRetriedNow: core.outbox.retrySmtpNow(Date.now()) }, 'resuming messages from the outbox');
  if (network instanceof OverlayConnection) network.subscribe((item) => core.onMailboxItem(item));
  if (own && cfg.network.authority_urls.length > 0) {
    const cache = new DocumentCache(cfg.network.document);
    const follower = new DocumentFollower({
      target: own,
      fetch: (which, now) => fetchNetworkDocument(cfg, which, now),
      save: (doc) => cache.save(doc),
      refreshS: cfg.network.refresh_s,
      uniform: csprngUniform,
      now: () => Date.now() / 1000,
      log,
    });
    follower.start();
    closers.push(() => follower.stop());
  }

  let smtp: SubmissionServer;
  try {
    smtp = await startSubmissionServer({
      host: cfg.smtp.host,
      port: cfg.smtp.port,
      auth: cfg.smtp.user ? { user: cfg.smtp.user, password: cfg.smtp.password } : null,
      maxMessageBytes: cfg.smtp.max_message_bytes,
      handler: core,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
      log,
    });
  } catch (e) {
    await stopAll();
    throw listenError(e, `smtp ${cfg.smtp.host}:${cfg.smtp.port}`);
  }
  let smtpUp = true;
  closers.push(() => {
    smtpUp = false;
    return smtp.close();
  });
  log.info({ host: cfg.smtp.host, port: smtp.port, auth: Boolean(cfg.smtp.user), starttls: Boolean(tls) }, 'smtp submission listening');

  let metrics: MetricsServer | null = null;
  if (cfg.metrics.enabled) {
    const reg = newRegistry('postmix_client');
    registerClientMetrics(
      reg,
      core,
      () => (network instanceof OverlayConnection ? network.link.counters : undefined),
      () => (network instanceof OverlayConnection ? { epoch: network.current?.body.epoch, stale: network.stale } : undefined),
    );
    try {
      metrics = await startMetricsServer(reg, cfg.metrics.host, cfg.metrics.port, {
        bearerToken: metricsBearerToken,
        readiness: () =>
          checkAll({
            smtp: smtpUp || 'the SMTP submission listener is not up',
            document: overlayDocument(network),
          }),
      });
    } catch (e) {
      await stopAll();
      throw listenError(e, `metrics ${cfg.metrics.host}:${cfg.metrics.port}`);
    }
    const m = metrics;
    closers.push(() => m.close());
    log.info({ port: metrics.port }, 'metrics listening');
  }

  // the scheduler: wake at the next stream event (bounded), and at least every maxSleepMs
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const maxSleep = ro.maxSleepMs ?? 1000;
  const loop = () => {
    if (stopped) return;
    try {
      core.tick(Date.now());
    } catch (e) {
      log.warn({ err: String(e) }, 'scheduler step failed');
    }
    const wait = Math.max(1, Math.min(maxSleep, core.sender.nextEventAt() - Date.now()));
    timer = setTimeout(loop, wait);
  };
  loop();
  closers.push(() => {
    stopped = true;
    if (timer) clearTimeout(timer);
  });

  return {
    core,
    smtpPort: smtp.port,
    metricsPort: metrics?.port ?? null,
    stop: stopAll,
  };
}
