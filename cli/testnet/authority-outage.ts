/**
 * `--authority-outage S`: every directory authority down (SIGKILL) for at least S seconds, longer
 * than two epochs, while mail is being sent; then back with the same keys and databases.
 *
 * The outage starts just after an epoch boundary, so the newest document the network holds is
 * the one for the epoch just begun: before issue 13 every role dropped it at its fresh_until +
 * grace (`old_expiry`), 1.75 epochs in, and mail stopped. The overlay messages are submitted
 * spread over the outage, the last ones after `old_expiry`, and the authorities stay down until
 * one of those has reached its MX (so the run proves the ride-through, not lucky timing), bounded
 * by the held document's valid_until (its last keys). Back, the authorities publish a new
 * document, and the step waits until every live mix, gateway and client routes by it (their own
 * metrics say so). What happened is reported; a step that could not be taken fails the run.
 */
import { fetchDocument, type FetchOptions } from '../../runtime/pki/client.ts';
import type { VerifiedDocument } from '../../proto/pki/index.ts';
import { scrape, sumMetric } from './metrics.ts';
import type { RunningNetwork } from './network.ts';
import type { Supervisor } from './processes.ts';

export interface AuthorityOutageReport {
  /** how long every authority was down (SIGKILL to started again) */
  readonly down_s: number;
  /** the newest document published before the outage: its epoch */
  readonly document_epoch: number;
  /** seconds into the outage at which that document's fresh_until + grace passed: where delivery stopped before issue 13 */
  readonly old_expiry_s: number;
  /** seconds into the outage at which its last keys end (valid_until): how long it could be ridden through */
  readonly valid_until_s: number;
  /** overlay messages submitted while every authority was down */
  readonly submitted_during: number;
  /** overlay messages that reached their MX while every authority was down */
  readonly delivered_during: number;
  /** ... of which after old_expiry */
  readonly delivered_past_old_expiry: number;
  /** the epoch of the first document the authorities published once back */
  readonly first_epoch_after: number;
  /** seconds after the authorities came back at which every live mix, gateway and client routed by that document or a newer one */
  readonly followed_after_s: number;
  /** each live node and client, and the epoch of the document it routed by then */
  readonly followers: readonly { readonly name: string; readonly document_epoch: number }[];
}

/** Who must follow the epoch once the authorities are back, and where each says which document it routes by. */
export interface Follower {
  readonly name: string;
  readonly metricsUrl: string;
  /** the gauge holding the epoch of the document routing now */
  readonly metric: string;
}

export interface OutageTimes {
  /** unix ms: the authorities went down */
  readonly downAt: number;
  /** unix ms: the held document's fresh_until + grace */
  readonly oldExpiryMs: number;
  /** unix ms: the held document's valid_until */
  readonly validUntilMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class AuthorityOutage {
  private times: OutageTimes | undefined;
  private held: VerifiedDocument | undefined;
  private upAt = 0;
  private result: AuthorityOutageReport | null = null;

  constructor(
    private readonly o: { readonly seconds: number; readonly epochLength: number; readonly threshold: number; readonly timeoutS: number },
    private readonly net: RunningNetwork,
    private readonly sup: Supervisor,
    private readonly log: (s: string) => void,
  ) {}

  private fetchOpts(): FetchOptions {
    return {
      urls: this.net.authorities.map((a) => a.url),
      authorities: this.net.authorities.map((a) => Uint8Array.from(Buffer.from(a.publicKey, 'base64'))),
      threshold: this.o.threshold,
      now: Math.floor(Date.now() / 1000),
      timeoutMs: 2000,
    };
  }

  /** Waits for the next epoch boundary, notes the newest document, and SIGKILLs every authority. */
  async begin(): Promise<OutageTimes> {
    const L = this.o.epochLength * 1000;
    // one second past the boundary: every role has moved to the epoch's document
    await sleep(L - (Date.now() % L) + 1000);
    const doc = await fetchDocument('latest', this.fetchOpts());
    await Promise.all(this.net.authorities.map((a) => this.sup.kill(a.name)));
    const downAt = Date.now();
    this.held = doc;
    this.times = { downAt, oldExpiryMs: (doc.body.freshUntil + doc.body.grace) * 1000, validUntilMs: doc.body.validUntil * 1000 };
    const at = (ms: number) => `${((ms - downAt) / 1000).toFixed(1)} s`;
    this.log(
      `all ${this.net.authorities.length} directory authorities DOWN (SIGKILL) for at least ${this.o.seconds} s; the newest document is for epoch ${doc.body.epoch}: ` +
        `before issue 13 it would have been dropped ${at(this.times.oldExpiryMs)} in (fresh_until + grace), its keys last until ${at(this.times.validUntilMs)} in`,
    );
    return this.times;
  }

  /**
   * In the background once begun: the authorities come back after `seconds` and once an overlay
   * message submitted past the old expiry has arrived (`arrivals`: unix ms at which each overlay
   * message reached its MX, null if not yet, with its submission time); then every follower must
   * route by a document published after the outage.
   */
  async ride(arrivals: () => readonly { submittedAt: number; arrivedAt: number | null }[], followers: () => readonly Follower[]): Promise<void> {
    const t = this.times!;
    const pastOld = () => arrivals().some((a) => a.submittedAt > t.oldExpiryMs && a.arrivedAt !== null);
    // the held document's keys end at valid_until: the authorities must be back and publishing before then
    const limit = Math.min(t.validUntilMs - (this.o.epochLength * 1000) / 2, t.downAt + this.o.timeoutS * 1000);
    while (Date.now() < t.downAt + this.o.seconds * 1000 || !pastOld()) {
      if (Date.now() > limit)
        throw new Error(
          `no overlay message submitted after the old expiry arrived while the authorities were down (gave up after ${((Date.now() - t.downAt) / 1000).toFixed(0)} s)`,
        );
      await sleep(500);
    }
    for (const a of this.net.authorities) this.sup.start(a.name, this.sup.get(a.name)!.args);
    this.upAt = Date.now();
    await Promise.all(this.net.authorities.map((a) => this.sup.waitForLog(a.name, /directory authority listening/, 60_000)));
    const during = arrivals().filter((a) => a.submittedAt >= t.downAt && a.submittedAt < this.upAt);
    const arrived = arrivals().filter((a) => a.arrivedAt !== null && a.arrivedAt >= t.downAt && a.arrivedAt < this.upAt);
    this.log(
      `directory authorities started again after ${((this.upAt - t.downAt) / 1000).toFixed(1)} s; meanwhile ${arrived.length} overlay messages reached their MX ` +
        `(${arrived.filter((a) => a.arrivedAt! > t.oldExpiryMs).length} after the old expiry)`,
    );
    // a new document, then every follower on it
    const held = this.held!.body.epoch;
    const end = this.upAt + (this.o.epochLength * 4 + 30) * 1000;
    let first = -1;
    while (first < 0) {
      const doc = await fetchDocument('latest', this.fetchOpts()).catch(() => undefined);
      if (doc && doc.body.epoch > held) first = doc.body.epoch;
      else if (Date.now() > end)
        throw new Error(`the authorities published no document after epoch ${held} within ${this.o.epochLength * 4 + 30} s of coming back`);
      else await sleep(500);
    }
    this.log(`the authorities published the document for epoch ${first}; waiting for every node and client to route by it`);
    let seen: { name: string; document_epoch: number }[] = [];
    for (;;) {
      seen = await Promise.all(
        followers().map(async (f) => ({
          name: f.name,
          document_epoch: await scrape(f.metricsUrl).then(
            (s) => (s.some((x) => x.name === f.metric) ? sumMetric(s, f.metric) : -1),
            () => -1,
          ),
        })),
      );
      const behind = seen.filter((s) => s.document_epoch < first);
      if (behind.length === 0) break;
      if (Date.now() > end)
        throw new Error(
          `not following epoch ${first} ${((Date.now() - this.upAt) / 1000).toFixed(0)} s after the authorities came back: ${behind.map((b) => `${b.name} (${b.document_epoch})`).join(', ')}`,
        );
      await sleep(500);
    }
    this.result = {
      down_s: (this.upAt - t.downAt) / 1000,
      document_epoch: held,
      old_expiry_s: (t.oldExpiryMs - t.downAt) / 1000,
      valid_until_s: (t.validUntilMs - t.downAt) / 1000,
      submitted_during: during.length,
      delivered_during: arrived.length,
      delivered_past_old_expiry: arrived.filter((a) => a.arrivedAt! > t.oldExpiryMs).length,
      first_epoch_after: first,
      followed_after_s: (Date.now() - this.upAt) / 1000,
      followers: seen,
    };
    this.log(`every live node and client routes by epoch ${first} or later, ${this.result.followed_after_s.toFixed(1)} s after the authorities came back`);
  }

  report(): AuthorityOutageReport | null {
    return this.result;
  }
}

/**
 * Submission times spreading the overlay messages over the outage: the first a second in, the
 * last past the old expiry (and at least half an epoch before the authorities are due back);
 * the others (fallback, refused) go at once. Pure.
 */
export function spreadOverOutage(overlay: readonly boolean[], t: OutageTimes, seconds: number, epochLength: number): number[] {
  const from = t.downAt + 1000;
  const to = Math.max(t.downAt + (seconds - epochLength / 2) * 1000, t.oldExpiryMs + 2000);
  return spreadTimes(overlay, from, to);
}

/** Overlay messages evenly from `from` to `to` (unix ms), in order; the others at `from`. Pure. */
export function spreadTimes(overlay: readonly boolean[], from: number, to: number): number[] {
  const n = overlay.filter(Boolean).length;
  let k = 0;
  return overlay.map((o) => (o ? from + (n <= 1 ? to - from : ((to - from) * k++) / (n - 1)) : from));
}
