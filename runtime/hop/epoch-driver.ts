/**
 * A hop's side of the PKI schedule (docs/spec/pki.md §5), the same for a mix and a gateway.
 * Every tick, in epoch e:
 *
 * - fetch the document for e while it is missing, and the one for e + 1 from the collect point
 *   on (before it the authorities have nothing to serve); keep the newest one on disk, so a
 *   restarted node can route before it reaches an authority; while the authorities are out of
 *   reach the view routes by the newest document with keys for e (proto/pki/validity.ts);
 * - upload this node's descriptor for e + 1 (only before the vote point: later ones miss the
 *   vote) and for e + 2 (a node that misses one vote, e.g. while restarting, is still listed one
 *   epoch later), each with the Sphinx keys of its epoch and MAX_KEYS_AHEAD more, made ahead of
 *   time so that documents list them and the network routes on through an authority outage;
 * - hand the view to the role (`onView`), which installs routing, packet size and the like;
 * - once the previous epoch's grace window is over, drop its replay set and delete its Sphinx
 *   key files (forward secrecy).
 *
 * The key switch itself happens at the boundary (EpochKeys.keys() looks at the clock), not here.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  buildDescriptor,
  epochAt,
  epochStart,
  isPkiError,
  keyEpochsOfDescriptor,
  lastKeyEpoch,
  schedulePoint,
  SCHEDULE,
  type DescriptorInput,
  type EpochConfig,
  type IdentityKey,
  type VerifiedDocument,
} from '../../proto/pki/index.ts';
import { DocumentCache, fetchDocument, uploadDescriptor } from '../pki/client.ts';
import type { DirectorySection, ResolvedHopConfig } from '../config-schema.ts';
import type { EpochKeys } from './epoch-keys.ts';
import type { NetworkView } from './network-view.ts';
import type { ReplayTagStore } from './replay-store.ts';

/** What the role puts in its descriptor; identity, epoch, Sphinx keys and timestamp are the driver's. */
export type DescriptorFields = Pick<DescriptorInput, 'peerId' | 'addresses' | 'role' | 'layerPreference' | 'gateway'>;

/** The part of a resolved mix or gateway config the driver reads. */
export type EpochDriverConfig = Pick<
  ResolvedHopConfig<{ readonly directory: Pick<DirectorySection, 'threshold' | 'timeout_ms' | 'retry_ms'> }>,
  'epoch' | 'authorities' | 'dataDir' | 'file'
>;

export interface EpochDriverOptions {
  /** The last good document is kept as `document.bin` in `dataDir`. */
  readonly config: EpochDriverConfig;
  readonly identity: IdentityKey;
  readonly keys: Pick<EpochKeys, 'ensure' | 'prune'>;
  readonly view: NetworkView;
  readonly replay: Pick<ReplayTagStore, 'dropEpochsBefore'>;
  readonly log: Logger;
  /** Unix seconds. */
  readonly now: () => number;
  /** Asked at each upload: the listen addresses are known only once the link is up. */
  readonly descriptor: () => DescriptorFields;
  /**
   * After each round's view update; `changed` when this update rebuilt it. Called every round,
   * not only on a change: the view can also be updated outside the driver
   * (Gateway.installDocument), and the round after that reports no change.
   */
  readonly onView?: (e: number, changed: boolean) => void;
  /** The role's own periodic work, in the same serialised tick, so it never overlaps a round. */
  readonly afterRound?: (t: number) => void;
  /** 'ok' or the PkiReason of a failed fetch (metrics). */
  readonly onFetch?: (result: string) => void;
  /** Each authority's answer to an upload (metrics). */
  readonly onUpload?: (result: string) => void;
  /** An epoch's grace ended: the replay sets and Sphinx key files dropped (metrics). */
  readonly onPrune?: (replaySetsDropped: number, keyFilesDeleted: number) => void;
  /** Seams for tests: the HTTP calls and the clock that spaces retries. */
  readonly fetchDocument?: typeof fetchDocument;
  readonly uploadDescriptor?: typeof uploadDescriptor;
  /** Milliseconds, monotonic; default performance.now (immune to wall-clock steps). */
  readonly monotonicMs?: () => number;
}

/** True while the previous epoch's Sphinx keys (and documents, replay sets) are still accepted. */
function inGraceWindow(c: EpochConfig, t: number): boolean {
  const e = epochAt(c, t);
  return e > 0 && t < epochStart(c, e) + c.grace;
}

export class EpochDriver {
  private readonly o: EpochDriverOptions;
  private readonly c: EpochConfig;
  private readonly d: EpochDriverConfig['file']['directory'];
  private readonly cache: DocumentCache;
  private readonly fetchDoc: typeof fetchDocument;
  private readonly upload: typeof uploadDescriptor;
  private readonly monotonicMs: () => number;
  /** Epochs whose descriptor a threshold of authorities holds: no more uploads for them. */
  private readonly uploaded = new Set<number>();
  private readonly lastTry = new Map<string, number>();
  private prunedBefore = -1;
  private warnedNoDoc = -1;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private stopped = false;

  constructor(o: EpochDriverOptions) {
    this.o = o;
    this.c = o.config.epoch;
    this.d = o.config.file.directory;
    this.cache = new DocumentCache(join(o.config.dataDir, 'document.bin'));
    this.fetchDoc = o.fetchDocument ?? fetchDocument;
    this.upload = o.uploadDescriptor ?? uploadDescriptor;
    this.monotonicMs = o.monotonicMs ?? (() => performance.now());
  }

  private verifyOpts(): { authorities: Uint8Array[]; threshold: number } {
    return { authorities: this.o.config.authorities.map((a) => a.publicKey), threshold: this.d.threshold };
  }

  /** Puts the cached document (if still valid) into the view; returns it. */
  restoreCached(): VerifiedDocument | undefined {
    const cached = this.cache.load({ ...this.verifyOpts(), now: this.o.now() });
    if (cached) this.o.view.add(cached);
    return cached;
  }

  /** Rebuilds the view for the clock's epoch; true when it changed. */
  updateView(): boolean {
    const t = this.o.now();
    return this.o.view.update(epochAt(this.c, t), inGraceWindow(this.c, t));
  }

  /** Runs a round now, then every `tickMs`. */
  async start(tickMs: number): Promise<void> {
    await this.tick();
    if (this.stopped) return;
    this.timer = setInterval(() => void this.tick(), tickMs);
    this.timer.unref();
  }

  /** No more rounds; waits for the one in flight, so the caller may close what it uses. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.ticking) await this.ticking;
  }

  /**
   * One round. Rounds never overlap: a call during a round gets that round's promise (the
   * interval and tests moving the clock both call this).
   */
  tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    this.ticking = this.round()
      .catch((e: unknown) => this.o.log.error({ err: (e as Error).message }, 'epoch tick failed'))
      .finally(() => {
        this.ticking = null;
      });
    return this.ticking;
  }

  /**
   * True at most once per `retry_ms` for one fetch or upload: a node retries an authority that
   * is down without hammering it, while a tick may be much shorter than that.
   */
  private due(what: string): boolean {
    const t = this.monotonicMs();
    const last = this.lastTry.get(what);
    if (last !== undefined && t - last < this.d.retry_ms) return false;
    this.lastTry.set(what, t);
    return true;
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    const { view } = this.o;
    const c = this.c;
    const t = this.o.now();
    const e = epochAt(c, t);
    const inGrace = inGraceWindow(c, t);
    if (!view.has(e) && this.due(`doc-${e}`)) await this.fetch(e, t);
    if (t >= schedulePoint(c, e, SCHEDULE.collect) && !view.has(e + 1) && this.due(`doc-${e + 1}`)) await this.fetch(e + 1, t);
    if (this.stopped) return;
    this.o.onView?.(e, view.update(e, inGrace));
    // a quarter into the epoch the document is overdue, not merely in flight
    if ((!view.current || view.stale) && this.warnedNoDoc !== e && t >= schedulePoint(c, e, 0.25)) {
      this.warnedNoDoc = e;
      if (view.current)
        this.o.log.warn(
          { epoch: e, document: view.current.body.epoch, keysUntilEpoch: lastKeyEpoch(view.current.body) },
          'no network document for this epoch yet (authorities unreachable?): routing by an older one, which lists keys for it',
        );
      else this.o.log.warn({ epoch: e }, 'no network document for the current epoch: this node forwards nothing until it has one');
    }
    for (const E of [e + 1, e + 2]) {
      if (this.uploaded.has(E) || this.stopped) continue;
      if (E === e + 1 && t >= schedulePoint(c, e, SCHEDULE.vote)) continue; // too late for e+1
      if (this.due(`up-${E}`)) await this.uploadFor(E);
    }
    for (const E of [...this.uploaded]) if (E <= e) this.uploaded.delete(E);
    if (!inGrace && this.prunedBefore < e) {
      this.prunedBefore = e;
      const tags = this.o.replay.dropEpochsBefore(e);
      const keys = this.o.keys.prune(e);
      this.o.onPrune?.(tags.length, keys.length);
      if (tags.length > 0 || keys.length > 0) this.o.log.info({ epoch: e, replaySetsDropped: tags, keyFilesDeleted: keys }, 'previous epoch expired');
    }
    this.o.afterRound?.(t);
  }

  private async fetch(E: number, t: number): Promise<void> {
    try {
      const doc = await this.fetchDoc(E, {
        ...this.verifyOpts(),
        urls: this.o.config.authorities.map((a) => a.url),
        epoch: E,
        now: t,
        timeoutMs: this.d.timeout_ms,
      });
      this.o.view.add(doc);
      this.o.onFetch?.('ok');
      this.saveCache(doc);
      this.o.log.info(
        { epoch: E, signers: doc.signers.length, mixes: doc.body.layers.flat().length, gateways: doc.body.gateways.length },
        'network document fetched',
      );
    } catch (e) {
      this.o.onFetch?.(isPkiError(e) ? e.reason : 'error');
      this.o.log.debug({ epoch: E, err: (e as Error).message }, 'no document yet');
    }
  }

  /** The next epoch's document may arrive before the current one: the cache keeps the newest. */
  private saveCache(doc: VerifiedDocument): void {
    try {
      const cached = this.cache.load({ ...this.verifyOpts() });
      if (!cached || cached.body.epoch <= doc.body.epoch) this.cache.save(doc);
    } catch (e) {
      this.o.log.warn({ err: (e as Error).message }, 'cannot write the document cache');
    }
  }

  private async uploadFor(E: number): Promise<void> {
    const { c, d } = this;
    const sphinxKeys = this.o.keys.ensure(keyEpochsOfDescriptor(E));
    const descriptor = buildDescriptor({
      ...this.o.descriptor(),
      identity: this.o.identity,
      epoch: E,
      sphinxKeys,
      // stable across restarts, so a re-upload is an idempotent duplicate
      publishedAt: Math.max(0, epochStart(c, Math.max(0, E - 1))),
    });
    const results = await this.upload(
      this.o.config.authorities.map((a) => a.url),
      descriptor,
      d.timeout_ms,
    );
    for (const r of results) this.o.onUpload?.(r.result);
    // 'conflicting': the authority keeps an earlier descriptor of this node, so it is listed all the same
    const held = results.filter((r) => r.result === 'accepted' || r.result === 'duplicate' || r.result === 'conflicting').length;
    const conflicting = results.filter((r) => r.result === 'conflicting');
    if (conflicting.length > 0)
      this.o.log.warn(
        { epoch: E, authorities: conflicting.map((r) => r.url) },
        'authorities hold another descriptor of this node for the epoch (changed address?); theirs stays',
      );
    if (held >= d.threshold) {
      this.uploaded.add(E);
      this.o.log.info({ epoch: E, held, of: results.length }, 'descriptor uploaded');
    } else {
      this.o.log.warn(
        { epoch: E, results: results.map((r) => ({ url: r.url, result: r.result, message: r.message })) },
        'descriptor upload did not reach the threshold; will retry',
      );
    }
  }
}
