/**
 * `postmix client run`: the client daemon. SMTP intake on loopback, the durable outbox, the
 * overlay sender's Poisson streams (when a network is available), the SMTP fallback worker,
 * Prometheus metrics on loopback, pino logs, graceful shutdown.
 */
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { fastestSuite } from '../proto/sphinx/index.ts';
import { ConfigError, isLoopback, newRegistry, startMetricsServer, type MetricsServer } from '../runtime/daemon.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { privateDir } from '../runtime/private-files.ts';
import { outboxPath, type ClientConfig } from './config.ts';
import { ClientCore, type Network } from './core.ts';
import { startIntake, type Intake } from './intake.ts';

export interface RunningClient {
  readonly core: ClientCore;
  readonly smtpPort: number;
  readonly metricsPort: number | null;
  stop(): Promise<void>;
}

export interface RunOptions {
  readonly log: Logger;
  /** An overlay network (link + document); null or absent: fallback rules only. */
  readonly network?: Network | null;
  /** Upper bound between scheduler wake-ups, ms (default 1000). */
  readonly maxSleepMs?: number;
}

export function checkListen(cfg: ClientConfig): void {
  if (!isLoopback(cfg.smtp.host) && !cfg.smtp.allow_remote)
    throw new ConfigError(`smtp.host ${cfg.smtp.host} is not loopback; set smtp.allow_remote = true to listen there`);
  if (!isLoopback(cfg.smtp.host) && !cfg.smtp.user) throw new ConfigError('smtp.user and smtp.password are required when smtp.host is not loopback');
  if (cfg.metrics.enabled && !isLoopback(cfg.metrics.host)) throw new ConfigError(`metrics.host ${cfg.metrics.host} must be loopback`);
}

export async function runClient(cfg: ClientConfig, ro: RunOptions): Promise<RunningClient> {
  checkListen(cfg);
  const log = ro.log;
  privateDir(cfg.data_dir);
  const sh = cfg.smarthost;
  const core = new ClientCore({
    outboxPath: outboxPath(cfg),
    suite: fastestSuite,
    network: ro.network ?? null,
    policy: {
      overlayOnly: cfg.routing.overlay_only,
      overlayOnlyRecipients: cfg.routing.overlay_only_recipients,
      forceSmtp: cfg.routing.force_smtp,
      onGatewayLoss: cfg.routing.on_gateway_loss,
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
    lowTokens: cfg.overlay.low_tokens_warning,
    uniform: csprngUniform,
    log,
  });
  if (!ro.network) log.warn('no overlay network attached: every recipient follows the fallback rules (SMTP smarthost or refusal)');
  for (const e of core.wallet.low()) log.warn({ recipient: e.recipient, left: e.unspent }, 'running low on delivery tokens');
  const active = core.outbox.activeMessages().length;
  if (active > 0) log.info({ messages: active, smtpRetriedNow: core.outbox.retrySmtpNow(Date.now()) }, 'resuming messages from the outbox');

  let intake: Intake;
  try {
    intake = await startIntake({
      host: cfg.smtp.host,
      port: cfg.smtp.port,
      auth: cfg.smtp.user ? { user: cfg.smtp.user, password: cfg.smtp.password } : null,
      maxMessageBytes: cfg.smtp.max_message_bytes,
      handler: core,
      log,
    });
  } catch (e) {
    core.close();
    throw e;
  }
  log.info({ host: cfg.smtp.host, port: intake.port, auth: Boolean(cfg.smtp.user) }, 'smtp submission listening');

  // metrics
  let metrics: MetricsServer | null = null;
  if (cfg.metrics.enabled) {
    const reg = newRegistry('postmix_client');
    const c = core.counters;
    const s = core.stats;
    const counter = (name: string, help: string, get: () => number) =>
      new Counter({
        name,
        help,
        registers: [reg],
        collect() {
          this.reset();
          this.inc(get());
        },
      });
    counter('postmix_client_messages_accepted_total', 'messages accepted (250)', () => c.accepted);
    counter('postmix_client_recipients_refused_total', 'recipients refused at RCPT TO', () => c.refused);
    counter('postmix_client_smtp_relayed_total', 'recipients relayed through the smarthost', () => c.smtpRelayed);
    counter('postmix_client_bounced_total', 'recipients bounced', () => c.bounced);
    counter('postmix_client_delivered_total', 'recipients delivered (all ACKs, or smarthost 250)', () => c.delivered);
    const pk = new Counter({ name: 'postmix_client_packets_sent_total', help: 'packets sent by stream kind', labelNames: ['kind'], registers: [reg] });
    const upd = () => {
      pk.reset();
      pk.inc({ kind: 'real' }, s.real);
      pk.inc({ kind: 'drop' }, s.drop);
      pk.inc({ kind: 'loop' }, s.loop);
    };
    new Gauge({
      name: 'postmix_client_outbox_active_messages',
      help: 'messages in the outbox not yet delivered or bounced',
      registers: [reg],
      collect() {
        upd();
        this.set(core.outbox.activeMessages().length);
      },
    });
    counter('postmix_client_fragments_resent_total', 'fragments resent after an ACK timeout', () => s.resent);
    counter('postmix_client_acks_total', 'ACKs received', () => s.acks);
    counter('postmix_client_loops_returned_total', 'loop cover packets that came back', () => s.loopsReturned);
    metrics = await startMetricsServer(reg, cfg.metrics.host, cfg.metrics.port);
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

  return {
    core,
    smtpPort: intake.port,
    metricsPort: metrics?.port ?? null,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await intake.close();
      await metrics?.close();
      core.close();
    },
  };
}
