/**
 * Hands queued messages to the MX over SMTP or LMTP (nodemailer's SMTP transport), with
 * retries and exponential backoff.
 *
 * What goes to the MX: `MAIL FROM:<envelopeFrom>` (default the null reverse-path `<>`: there is
 * no one to bounce to), `RCPT TO:<recipient>`, and the message bytes exactly as the sender
 * submitted them (no header is added or changed; SMTP only transports them with CRLF line ends
 * and dot-stuffing, which the MX undoes). The stable queue id `postmix-<hex message id>` goes
 * in the DSN envelope id (`MAIL FROM ... ENVID=postmix-…`, RFC 3461) when the MX offers DSN, and
 * in every log line, so an MX (or its operator) can dedupe on it.
 *
 * The guarantee, precisely (state machine in the queue table):
 *   queued --claim (committed before the first byte to the MX)--> sending
 *   sending --MX answered 250 to the data--> delivered (body dropped, id kept for dedupe)
 *   sending --4xx / connection error--> queued (next attempt after backoff)
 *   sending --5xx, or older than maxAgeMs--> failed (kept; `postmix gateway queue retry`)
 * - A message id is enqueued at most once (primary key) and a delivered id is never sent again
 *   by the gateway, so intake resends after a lost ACK never reach the MX twice.
 * - A crash (SIGKILL, power loss) while a row is `queued` (e.g. between the ACK and the
 *   hand-off) loses nothing: the row is on disk and is handed over once after the restart.
 * - A crash while a row is `sending` is the one uncertain window: the MX may or may not have
 *   committed the message (it did if it had answered 250 and we died before our commit, a
 *   window of one SQLite commit; SMTP itself has the same window when a connection drops
 *   after the final dot, RFC 1047). On restart such rows follow `recovery`:
 *   'resend' (default): back to queued and handed over again under the same ENVID —
 *     at-least-once, duplicates only from that window, and dedupable by the MX on the id;
 *   'hold': moved to failed with reason "uncertain", for the operator to check the MX log for
 *     the id and then `queue retry` or `queue purge` — at-most-once without operator action.
 */
import nodemailer from 'nodemailer';
import type { SendMailOptions, Transporter, TransportOptions } from 'nodemailer';
import type { GatewayStore, QueueRow } from './store.ts';
import { handoffTlsReason } from './mx-tls.ts';

export interface MxOptions {
  readonly host: string;
  readonly port: number;
  readonly protocol?: 'smtp' | 'lmtp';
  /** 'opportunistic' (default): STARTTLS when offered; 'require': refuse to send without it; 'never'. */
  readonly starttls?: 'opportunistic' | 'require' | 'never';
  /** Verify the MX's certificate (default true; a loopback MX with a self-signed cert: false). */
  readonly tlsVerify?: boolean;
  /** Name sent in EHLO/LHLO. */
  readonly heloName?: string;
  /** Envelope sender; '' (default) is the null reverse-path. */
  readonly envelopeFrom?: string;
  readonly auth?: { readonly user: string; readonly pass: string };
  readonly timeoutMs?: number;
}

export interface HandoffOptions {
  readonly store: GatewayStore;
  readonly mx: MxOptions;
  /** First retry delay (ms, default 30 s); doubles per attempt up to maxDelayMs (default 1 h). */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** A message still undelivered this long after queueing is failed (default 5 days). */
  readonly maxAgeMs?: number;
  /** What to do with rows left in 'sending' by a crash (see the file comment). */
  readonly recovery?: 'resend' | 'hold';
  /** Idle poll interval (ms, default 1000); `wake()` runs a pass at once. */
  readonly pollMs?: number;
  /** Messages handed over in parallel (default 4). */
  readonly concurrency?: number;
  readonly now?: () => number;
  readonly onDelivered?: (row: QueueRow, sendSeconds: number, queuedSeconds: number) => void;
  readonly onFailure?: (row: QueueRow, error: string, permanent: boolean) => void;
  readonly log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

export interface HandoffCounters {
  delivered: number;
  transientFailures: number;
  permanentFailures: number;
  recovered: number;
}

interface SmtpError extends Error {
  responseCode?: number;
  code?: string;
}

export function backoffMs(attempts: number, base: number, max: number): number {
  return Math.min(max, base * 2 ** Math.max(0, Math.min(30, attempts - 1)));
}

export class HandoffWorker {
  readonly counters: HandoffCounters = { delivered: 0, transientFailures: 0, permanentFailures: 0, recovered: 0 };
  private readonly transport: Transporter;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private again = false;
  private stopped = false;

  constructor(private readonly opts: HandoffOptions) {
    this.now = opts.now ?? Date.now;
    const mx = opts.mx;
    const starttls = mx.starttls ?? 'opportunistic';
    this.transport = nodemailer.createTransport({
      host: mx.host,
      port: mx.port,
      secure: false,
      lmtp: mx.protocol === 'lmtp',
      ignoreTLS: starttls === 'never',
      requireTLS: starttls === 'require',
      tls: { rejectUnauthorized: mx.tlsVerify ?? true },
      name: mx.heloName ?? 'postmix-gateway',
      // a pool of persistent connections (one per parallel hand-off), reused across messages
      pool: true,
      maxConnections: Math.max(1, opts.concurrency ?? 4),
      maxMessages: 1000,
      connectionTimeout: mx.timeoutMs ?? 30_000,
      greetingTimeout: mx.timeoutMs ?? 30_000,
      socketTimeout: mx.timeoutMs ?? 60_000,
      ...(mx.auth ? { auth: { user: mx.auth.user, pass: mx.auth.pass } } : {}),
    } as TransportOptions);
  }

  /** Applies the crash-recovery rule to rows left in 'sending'. Call once at start. */
  recover(): number {
    const rows = this.opts.store.inFlight();
    for (const r of rows) {
      if ((this.opts.recovery ?? 'resend') === 'resend') {
        this.opts.store.retryLater(r.handoffId, this.now(), 'gateway restarted during hand-off; resending under the same id');
      } else {
        this.opts.store.markFailed(r.handoffId, 'uncertain: gateway stopped during hand-off; check the MX log for this id, then queue retry or purge');
      }
      this.opts.log?.warn({ handoffId: r.handoffId, recovery: this.opts.recovery ?? 'resend' }, 'hand-off: row left in sending state by a crash');
    }
    this.counters.recovered += rows.length;
    return rows.length;
  }

  /** Recovers, then polls. */
  start(): void {
    this.recover();
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runOnce().finally(() => {
        const next = this.opts.store.db.open ? this.opts.store.nextDue() : null;
        const poll = this.opts.pollMs ?? 1000;
        this.schedule(next === null ? poll : Math.max(0, Math.min(poll, next - this.now())));
      });
    }, ms);
  }

  /** New work was queued: run a pass soon. */
  wake(): void {
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  /** One pass over due messages. Returns how many were delivered. Passes never overlap. */
  runOnce(): Promise<number> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let total = 0;
      do {
        this.again = false;
        total += await this.pass();
      } while (this.again && !this.stopped);
      return total;
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async pass(): Promise<number> {
    const store = this.opts.store;
    if (this.stopped || !store.db.open) return 0;
    const due = store.due(this.now(), 1000);
    let delivered = 0;
    let i = 0;
    const worker = async () => {
      while (i < due.length && !this.stopped) {
        const row = due[i++]!;
        if (await this.deliverOne(row)) delivered++;
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.opts.concurrency ?? 4) }, worker));
    return delivered;
  }

  private async deliverOne(row: QueueRow): Promise<boolean> {
    const store = this.opts.store;
    if (!row.body || !store.claim(row.handoffId)) return false;
    const t0 = performance.now();
    try {
      await this.transport.sendMail({
        envelope: { from: this.opts.mx.envelopeFrom ?? '', to: [row.recipient] },
        raw: row.body,
        dsn: { envid: row.handoffId, ret: 'HDRS' },
      } as SendMailOptions);
    } catch (e) {
      const err = e as SmtpError;
      // a TLS failure names its cause and the setting to change, not just "ESOCKET"
      const tlsWhy = handoffTlsReason(err, { host: this.opts.mx.host, tlsVerify: this.opts.mx.tlsVerify ?? true });
      const msg = `${err.responseCode ?? err.code ?? 'error'}: ${tlsWhy ?? err.message}`;
      const age = this.now() - row.created;
      const permanent = (err.responseCode !== undefined && err.responseCode >= 500) || age >= (this.opts.maxAgeMs ?? 5 * 86_400_000);
      if (!store.db.open) return false;
      if (permanent) {
        this.counters.permanentFailures++;
        store.markFailed(row.handoffId, msg);
      } else {
        this.counters.transientFailures++;
        store.retryLater(row.handoffId, this.now() + backoffMs(row.attempts + 1, this.opts.baseDelayMs ?? 30_000, this.opts.maxDelayMs ?? 3_600_000), msg);
      }
      this.opts.log?.warn({ handoffId: row.handoffId, attempt: row.attempts + 1, permanent, err: msg }, 'hand-off failed');
      this.opts.onFailure?.(row, msg, permanent);
      return false;
    }
    if (!store.db.open) return false;
    const now = this.now();
    store.markDelivered(row.handoffId, now);
    this.counters.delivered++;
    const sendS = (performance.now() - t0) / 1000;
    this.opts.log?.info({ handoffId: row.handoffId, bytes: row.size, attempt: row.attempts + 1 }, 'handed to the MX');
    this.opts.onDelivered?.(row, sendS, (now - row.created) / 1000);
    return true;
  }

  /** Stops polling and waits for the pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.running) await this.running.catch(() => 0);
    this.transport.close();
  }
}
