/**
 * How the client follows the network's epochs (docs/client.md, "Following epochs"):
 *
 * - ahead of each boundary it fetches the next epoch's document, at a random point between 80 %
 *   and 95 % into the epoch (the authorities publish it from 75 % on): at the boundary it is
 *   already held, and the clients of a network do not all ask at the same moment;
 * - with no usable document, or one older than the epoch (stale: the authorities published none
 *   for it, or the client missed it), it asks for the newest published one, again and again with
 *   a jittered back-off, and warns: stale, the client still routes by it under the keys it lists
 *   for this epoch; with none usable, overlay messages are held until one verifies;
 * - and at least every `refresh_s` it asks again, which picks up a republished document.
 *
 * `planFetch` is the pure rule; `DocumentFollower` runs it on a timer.
 */
import { documentEpochAt, newestUsable, lastKeyEpoch, isPkiError, type DocumentBody, type VerifiedDocument } from '../proto/pki/index.ts';
import type { Uniform } from '../proto/mixing/params.ts';
import type { Which } from '../runtime/pki/client.ts';

/** What to fetch next, and when (unix seconds). */
export interface FetchPlan {
  readonly which: Extract<Which, 'latest' | 'next'>;
  readonly at: number;
}

/** Where in an epoch the next document is fetched: between these fractions (after SCHEDULE.collect). */
export const FETCH_AHEAD = Object.freeze({ from: 0.8, to: 0.95 });

/** Seconds to wait after `failures` failed fetches in a row: doubling from `base`, capped, jittered ±50 %. */
export function retryDelay(failures: number, base: number, cap: number, uniform: Uniform): number {
  const d = Math.min(cap, base * 2 ** Math.min(Math.max(failures - 1, 0), 10));
  return d * (0.5 + uniform());
}

/**
 * The next fetch for a client holding `held` at time t (unix seconds), after `failures` failed
 * fetches in a row. Pure.
 */
export function planFetch(held: readonly DocumentBody[], t: number, failures: number, refreshS: number, uniform: Uniform): FetchPlan {
  const cur = newestUsable(
    held.map((body) => ({ body })),
    t,
  )?.body;
  const refresh = t + refreshS * (0.75 + 0.5 * uniform());
  // no document to go by: the epoch length is unknown, retry from 5 s up to a minute
  if (!cur) return { which: 'latest', at: failures === 0 ? t : t + retryDelay(failures, 5, Math.min(60, refreshS), uniform) };
  const len = cur.epochLength;
  const base = Math.max(1, len / 32);
  const cap = Math.min(60, refreshS, len / 4);
  const e = documentEpochAt(cur, t);
  const start = cur.validAfter + (e - cur.epoch) * len;
  if (cur.epoch < e) return { which: 'latest', at: failures === 0 ? t : t + retryDelay(failures, base, cap, uniform) };
  const aheadIn = (epochStart: number) => epochStart + len * (FETCH_AHEAD.from + (FETCH_AHEAD.to - FETCH_AHEAD.from) * uniform());
  if (held.some((d) => d.epoch > e)) {
    // the next one is here: the one after it is due in the next epoch
    const at = aheadIn(start + len);
    return at <= refresh ? { which: 'next', at } : { which: 'latest', at: refresh };
  }
  const ahead = start + len * FETCH_AHEAD.from;
  if (t < ahead) {
    const at = aheadIn(start);
    return at <= refresh ? { which: 'next', at } : { which: 'latest', at: refresh };
  }
  // in the fetch window without the next document (not published yet, or the fetch failed)
  return { which: 'next', at: t + (failures === 0 ? 0 : retryDelay(failures, base, cap, uniform)) };
}

export interface FollowerTarget {
  /** The held documents. */
  documents(): VerifiedDocument[];
  /** Takes a verified document (false: refused, e.g. a second body for an epoch). */
  update(doc: VerifiedDocument): boolean;
  /** The document routing now, if any, and whether it is older than the epoch. */
  readonly current: VerifiedDocument | undefined;
  readonly stale: boolean;
}

export interface FollowerOptions {
  readonly target: FollowerTarget;
  /** Fetches and verifies (fetchDocument with the configured authorities and threshold). */
  readonly fetch: (which: FetchPlan['which'], now: number) => Promise<VerifiedDocument>;
  /** Keeps the routing document for a restart (DocumentCache.save). */
  readonly save?: (doc: VerifiedDocument) => void;
  readonly refreshS: number;
  readonly uniform: Uniform;
  /** Unix seconds. */
  readonly now: () => number;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug?(o: object, m?: string): void } | null;
}

export class DocumentFollower {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private failures = 0;
  private saved: VerifiedDocument | undefined;
  private warned = '';
  private running: Promise<void> | null = null;
  /** Fetch outcomes, for metrics and tests. */
  readonly counts = { fetched: 0, failed: 0 };
  /** The plan the follower waits on (for status and tests). */
  plan: FetchPlan | undefined;

  constructor(private readonly o: FollowerOptions) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Runs the planned fetch now (tests; also what the timer calls). */
  runOnce(): Promise<void> {
    this.running ??= this.fetchPlanned().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    const t = this.o.now();
    this.plan = planFetch(
      this.o.target.documents().map((d) => d.body),
      t,
      this.failures,
      this.o.refreshS,
      this.o.uniform,
    );
    const ms = Math.max(0, Math.min((this.plan.at - t) * 1000, 2 ** 31 - 1));
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runOnce().then(() => this.schedule());
    }, ms);
    this.timer.unref();
  }

  private async fetchPlanned(): Promise<void> {
    const which = this.plan?.which ?? 'latest';
    const t = this.o.now();
    try {
      const doc = await this.o.fetch(which, t);
      this.counts.fetched++;
      this.failures = 0;
      if (this.o.target.update(doc)) this.o.log?.debug?.({ epoch: doc.body.epoch, which }, 'network document fetched');
    } catch (e) {
      this.counts.failed++;
      this.failures++;
      const reason = isPkiError(e) ? e.reason : 'error';
      this.o.log?.debug?.({ which, reason, err: (e as Error).message }, 'network document fetch failed');
    }
    this.report();
  }

  /** Saves the routing document when it changes, and says when there is a reason to worry. */
  private report(): void {
    const cur = this.o.target.current;
    if (cur && cur !== this.saved) {
      try {
        this.o.save?.(cur);
        this.saved = cur;
      } catch (e) {
        this.o.log?.warn({ err: (e as Error).message }, 'cannot write the document cache');
      }
    }
    const t = this.o.now();
    if (!cur) {
      if (this.warned !== 'none')
        this.o.log?.warn(
          { failedFetches: this.failures },
          'no valid network document (authorities unreachable?): overlay messages are held, not sent, until one verifies',
        );
      this.warned = 'none';
    } else if (this.o.target.stale) {
      const e = documentEpochAt(cur.body, t);
      if (this.warned !== `stale-${e}`)
        this.o.log?.warn(
          {
            epoch: e,
            document: cur.body.epoch,
            keysUntilEpoch: lastKeyEpoch(cur.body),
            validUntil: new Date(cur.body.validUntil * 1000).toISOString(),
            failedFetches: this.failures,
          },
          'the network document is stale (no newer one from the authorities): routing by it under the keys it lists for this epoch',
        );
      this.warned = `stale-${e}`;
    } else {
      if (this.warned !== '') this.o.log?.info({ epoch: cur.body.epoch }, 'network document current again');
      this.warned = '';
    }
  }
}
