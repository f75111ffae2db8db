/**
 * The client side of the postmix protocol, per client: real messages enter the outbox as
 * Poisson(realRate), each cut into fragments by the proto/fragment rule; at each payload tick
 * the outbox gives the next due fragment (new ones first, in order, then any whose ACK is
 * overdue, earliest deadline first — the order of client/outbox.ts), or nothing, and the tick
 * carries a decoy (`payloadTick`; `--payload-cover` can make it drop cover or a loop). A fragment is due again after the shared resend rule's
 * wait (randomised exponential backoff, proto/mixing/retransmit.ts) and goes out on a fresh
 * route, until `maxAttempts` sends; then its message bounces. ACKs come back as mailbox items.
 *
 * Pure bookkeeping: the engine moves the packets and calls in when a tick fires, a fragment
 * reaches its gateway, or an ACK reaches the client.
 */
import { ackTimeoutBaseMs, retransmitDelayMs } from '../proto/mixing/retransmit.ts';
import type { Uniform } from '../proto/mixing/params.ts';
import { grown } from './arrays.ts';
import { LogHistogram } from './histogram.ts';

/**
 * T_1 of the shared resend rule (proto/mixing/retransmit.ts) for a route of L mixes and a
 * gateway each way, in seconds: the wait after the k-th send is uniform in [T_k/2, 3T_k/2),
 * T_k doubling per send.
 */
export function ackTimeoutSeconds(layers: number, mu: number): number {
  return ackTimeoutBaseMs(layers + 1, layers + 1, mu) / 1000;
}

const ST_QUEUED = 0;
const ST_INFLIGHT = 1;
const ST_ACKED = 2;
const ST_BOUNCED = 3;

export class ClientProtocol {
  // fragments
  private frCap = 1024;
  frMsg = new Int32Array(this.frCap);
  frAttempts = new Int32Array(this.frCap);
  frDeadline = new Float64Array(this.frCap);
  frState = new Uint8Array(this.frCap);
  frDelivered = new Float64Array(this.frCap);
  private nFr = 0;
  // messages
  private msCap = 1024;
  msClient = new Int32Array(this.msCap);
  msT0 = new Float64Array(this.msCap);
  msCount = new Int32Array(this.msCap);
  msFirst = new Int32Array(this.msCap);
  msDelivered = new Int32Array(this.msCap);
  msAcked = new Int32Array(this.msCap);
  msGateway = new Int32Array(this.msCap);
  msTarget = new Int32Array(this.msCap);
  msBounced = new Uint8Array(this.msCap);
  private nMs = 0;
  // per client: new fragments waiting (FIFO), fragments in flight
  private readonly queue: Array<number[] | undefined>;
  private readonly inflight: Array<number[] | undefined>;

  readonly deliveredLatency = new LogHistogram();
  readonly ackedLatency = new LogHistogram();
  readonly fragmentLatency = new LogHistogram();
  stats = { messages: 0, fragments: 0, sent: 0, resent: 0, delivered: 0, acked: 0, bounced: 0, acks_received: 0 };

  constructor(
    clients: number,
    /** T_1 of the resend rule, ms */
    private readonly timeoutBaseMs: number,
    private readonly uniform: Uniform,
    private readonly maxAttempts: number,
    /** metrics count for messages submitted after this time */
    private readonly warmup: number,
    /** false: no ACKs; a fragment is sent once and counts as settled */
    private readonly acks = true,
  ) {
    this.queue = new Array(clients);
    this.inflight = new Array(clients);
  }

  /** A new message of `count` fragments for gateway node `gateway`; returns its id. */
  submit(c: number, t: number, count: number, gateway: number, target: number): number {
    if (this.nMs === this.msCap) this.growMessages();
    const m = this.nMs++;
    const first = this.nFr;
    while (this.nFr + count > this.frCap) this.growFragments();
    this.msClient[m] = c;
    this.msT0[m] = t;
    this.msCount[m] = count;
    this.msFirst[m] = first;
    this.msDelivered[m] = 0;
    this.msAcked[m] = 0;
    this.msGateway[m] = gateway;
    this.msTarget[m] = target;
    this.msBounced[m] = 0;
    let q = this.queue[c];
    if (!q) this.queue[c] = q = [];
    for (let i = 0; i < count; i++) {
      const f = this.nFr++;
      this.frMsg[f] = m;
      this.frAttempts[f] = 0;
      this.frDeadline[f] = 0;
      this.frState[f] = ST_QUEUED;
      this.frDelivered[f] = -1;
      q.push(f);
    }
    if (t > this.warmup) {
      this.stats.messages++;
      this.stats.fragments += count;
    }
    return m;
  }

  /** True when client `c` has a fragment due at `t` (what the payload stream tests). */
  dueCount(c: number, t: number): number {
    const q = this.queue[c];
    if (q && q.length > 0) return q.length;
    const fl = this.inflight[c];
    if (!fl) return 0;
    let n = 0;
    for (const f of fl) if (this.frDeadline[f]! <= t) n++;
    return n;
  }

  /**
   * The fragment a payload tick of client `c` at `t` carries, or −1 (drop cover). Fragments
   * that have used every attempt bounce their message here, as the client does when one falls due.
   */
  nextDue(c: number, t: number): number {
    const q = this.queue[c];
    let f = -1;
    if (q && q.length > 0) {
      f = q.shift()!;
      let fl = this.inflight[c];
      if (!fl) this.inflight[c] = fl = [];
      fl.push(f);
    } else {
      for (;;) {
        const fl = this.inflight[c];
        if (!fl) return -1;
        let best = -1;
        for (const g of fl) if (this.frDeadline[g]! <= t && (best < 0 || this.frDeadline[g]! < this.frDeadline[best]!)) best = g;
        if (best < 0) return -1;
        if (this.frAttempts[best]! >= this.maxAttempts) {
          this.bounce(this.frMsg[best]!, c);
          continue;
        }
        f = best;
        break;
      }
    }
    const m = this.frMsg[f]!;
    if (this.frAttempts[f]! > 0 && this.msT0[m]! > this.warmup) this.stats.resent++;
    if (this.msT0[m]! > this.warmup) this.stats.sent++;
    this.frAttempts[f]!++;
    this.frState[f] = ST_INFLIGHT;
    this.frDeadline[f] = t + retransmitDelayMs(this.frAttempts[f]!, this.timeoutBaseMs, this.uniform) / 1000;
    if (!this.acks) {
      this.frState[f] = ST_ACKED;
      this.inflight[c]!.pop();
    }
    return f;
  }

  private bounce(m: number, c: number): void {
    this.msBounced[m] = 1;
    if (this.msT0[m]! > this.warmup) this.stats.bounced++;
    const first = this.msFirst[m]!;
    const end = first + this.msCount[m]!;
    for (let f = first; f < end; f++) if (this.frState[f] !== ST_ACKED) this.frState[f] = ST_BOUNCED;
    const q = this.queue[c];
    if (q) this.queue[c] = q.filter((f) => f < first || f >= end);
    const fl = this.inflight[c];
    if (fl) this.inflight[c] = fl.filter((f) => f < first || f >= end);
  }

  /** Fragment `f` reached its gateway's intake at `t` (the first time counts). */
  delivered(f: number, t: number): void {
    if (this.frDelivered[f]! >= 0) return;
    this.frDelivered[f] = t;
    const m = this.frMsg[f]!;
    const counted = this.msT0[m]! > this.warmup;
    if (counted) this.fragmentLatency.add(t - this.msT0[m]!);
    if (++this.msDelivered[m]! === this.msCount[m] && counted) {
      this.stats.delivered++;
      this.deliveredLatency.add(t - this.msT0[m]!);
    }
  }

  /** An ACK of fragment `f` reached its client at `t`. */
  ackReceived(f: number, t: number): void {
    const m = this.frMsg[f]!;
    if (this.msT0[m]! > this.warmup) this.stats.acks_received++;
    if (this.frState[f] !== ST_INFLIGHT) return;
    this.frState[f] = ST_ACKED;
    const c = this.msClient[m]!;
    const fl = this.inflight[c]!;
    const i = fl.indexOf(f);
    if (i >= 0) {
      fl[i] = fl[fl.length - 1]!;
      fl.pop();
    }
    if (++this.msAcked[m]! === this.msCount[m] && this.msT0[m]! > this.warmup) {
      this.stats.acked++;
      this.ackedLatency.add(t - this.msT0[m]!);
    }
  }

  messageCount(): number {
    return this.nMs;
  }

  private growFragments(): void {
    const n = this.frCap * 2;
    this.frMsg = grown(this.frMsg, n);
    this.frAttempts = grown(this.frAttempts, n);
    this.frDeadline = grown(this.frDeadline, n);
    this.frState = grown(this.frState, n);
    this.frDelivered = grown(this.frDelivered, n);
    this.frCap = n;
  }

  private growMessages(): void {
    const n = this.msCap * 2;
    this.msClient = grown(this.msClient, n);
    this.msT0 = grown(this.msT0, n);
    this.msCount = grown(this.msCount, n);
    this.msFirst = grown(this.msFirst, n);
    this.msDelivered = grown(this.msDelivered, n);
    this.msAcked = grown(this.msAcked, n);
    this.msGateway = grown(this.msGateway, n);
    this.msTarget = grown(this.msTarget, n);
    this.msBounced = grown(this.msBounced, n);
    this.msCap = n;
  }
}
