/**
 * The metrics every hop exports, a mix or a gateway alike, under the role's prefix
 * (`postmix_mixnode_…`, `postmix_gateway_…`): the packet pipeline, the delay queue, the link,
 * the epoch state and the directory. Read at scrape time from the hop node's plain counters
 * (runtime/metrics.ts); the two histograms observe as packets go.
 */
import { Histogram, type Registry } from 'prom-client';
import { HOP_DROP_REASONS, type HopCounters } from '../../proto/hop/engine.ts';
import type { LinkCounters } from '../link/link.ts';
import type { PoolStats } from './unwrap-pool.ts';
import { scrapedCounter, scrapedCounters, scrapedGauge } from '../metrics.ts';

/** Drops the hop node counts itself, outside the engines. */
export const NODE_DROP_REASONS = ['link-refused', 'worker-crash'] as const;
export type NodeDropReason = (typeof NODE_DROP_REASONS)[number];

export interface HopMetricSources {
  hop(): HopCounters;
  nodeDrops(): Readonly<Record<NodeDropReason, number>>;
  queue(): { packets: number; bytes: number };
  link(): LinkCounters | undefined;
  connections(): number;
  /** The Sphinx worker pool's counters; undefined with `[crypto] workers = 0`. */
  pool(): PoolStats | undefined;
  epoch(): { epoch: number; layer: number; documentEpoch: number; keys: number };
  /** Document fetches by result ('ok' or the PKI reason). */
  fetches(): ReadonlyMap<string, number>;
  /** Descriptor uploads by each authority's answer. */
  uploads(): ReadonlyMap<string, number>;
  /** What the key directory and the replay store hold, and what expiry removed from them. */
  stores(): { keyFiles: number; replayEpochs: number; keyFilesDeleted: number; replaySetsDropped: number };
}

export class HopMetrics {
  readonly processing: Histogram;
  readonly lateness: Histogram;

  constructor(registry: Registry, prefix: string, src: HopMetricSources) {
    const m = (name: string) => `${prefix}_${name}`;
    const counter = (name: string, help: string, read: () => number | undefined) => scrapedCounter(registry, m(name), help, read);
    counter('packets_received_total', 'Sphinx frames handed to the packet pipeline', () => src.hop().received);
    counter('packets_forwarded_total', 'packets sent on to the next hop after their delay', () => src.hop().forwarded);
    counter('packets_delivered_total', 'final-hop packets taken here', () => src.hop().delivered);
    counter('cover_ended_total', 'drop cover that ended at this node', () => src.hop().coverEnded);
    scrapedCounters(registry, m('packets_dropped_total'), 'packets dropped, by reason (never answered)', 'reason', () => {
      const h = src.hop();
      const out: [string, number][] = HOP_DROP_REASONS.map((r) => [r, h.dropped[r]]);
      for (const r of NODE_DROP_REASONS) out.push([r, src.nodeDrops()[r]]);
      out.push(['wrong-size-frame', src.link()?.droppedWrongSizeIn ?? 0]);
      return out;
    });
    scrapedGauge(registry, m('queue_packets'), 'packets held in the delay queue', () => src.queue().packets);
    scrapedGauge(registry, m('queue_bytes'), 'bytes held in the delay queue (bounded by limits.max_queued_bytes)', () => src.queue().bytes);
    this.processing = new Histogram({
      name: m('processing_seconds'),
      help: 'time to process one frame (Sphinx layer, replay check, queueing)',
      buckets: [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
      registers: [registry],
    });
    this.lateness = new Histogram({
      name: m('scheduler_lateness_seconds'),
      help: 'how late packets leave the delay queue after the time their header named',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
      registers: [registry],
    });
    // the Sphinx worker pool ([crypto] workers; all 0 when the layers are peeled on the event loop)
    const pool = (): Partial<PoolStats> => src.pool() ?? {};
    scrapedGauge(registry, m('crypto_workers'), 'Sphinx worker threads running (0: layers peeled on the event loop)', () => pool().workers ?? 0);
    counter('crypto_batches_total', 'batches of frames handed to a Sphinx worker thread', () => pool().batches ?? 0);
    counter('crypto_batch_frames_total', 'frames in those batches (the mean batch is their quotient)', () => pool().frames ?? 0);
    scrapedGauge(registry, m('crypto_queue_frames'), 'frames waiting for a Sphinx worker thread or in one', () => pool().queuedFrames ?? 0);
    counter(
      'crypto_inline_frames_total',
      'frames peeled on the event loop because the workers were behind (the pool at its bound)',
      () => pool().inlineFrames ?? 0,
    );
    counter('crypto_worker_crashes_total', 'Sphinx worker threads that died (each replaced)', () => pool().crashes ?? 0);
    counter('crypto_batches_rerun_total', 'batches run again on another worker after theirs died', () => pool().rerunBatches ?? 0);
    // link
    const l = (): Partial<LinkCounters> => src.link() ?? {};
    scrapedCounters(registry, m('link_frames_total'), 'frames crossing the packet link', 'direction', () => ({
      in: l().framesIn ?? 0,
      out: l().framesOut ?? 0,
    }));
    scrapedCounters(registry, m('link_bytes_total'), 'frame bytes crossing the packet link', 'direction', () => ({
      in: l().bytesIn ?? 0,
      out: l().bytesOut ?? 0,
    }));
    scrapedCounters(registry, m('link_dropped_total'), 'frames the link dropped, by reason', 'reason', () => ({
      'wrong-size-in': l().droppedWrongSizeIn ?? 0,
      'wrong-size-out': l().droppedWrongSizeOut ?? 0,
      'queue-full': l().droppedQueueFull ?? 0,
      unreachable: l().droppedUnreachable ?? 0,
    }));
    const linkCounter = (name: string, help: string, key: keyof LinkCounters) => counter(name, help, () => src.link()?.[key]);
    linkCounter('link_streams_aborted_total', 'inbound streams aborted for a bad length prefix', 'streamsAbortedBadPrefix');
    linkCounter('link_streams_refused_total', 'inbound streams refused (peer not allowed)', 'streamsRefused');
    linkCounter('link_connections_denied_total', 'connections refused by the gater (peer not in the document)', 'connectionsDenied');
    linkCounter('link_inbound_pauses_total', 'inbound streams paused for backpressure', 'inboundPauses');
    linkCounter('link_dials_total', 'outbound dials', 'dials');
    linkCounter('link_dial_failures_total', 'failed outbound dials', 'dialFailures');
    linkCounter('link_wrong_peer_total', 'dials answered by another peer than the one dialled (refused)', 'wrongPeer');
    scrapedGauge(registry, m('link_connections'), 'open libp2p connections', () => src.connections());
    // epochs and directory
    scrapedGauge(registry, m('epoch'), 'current epoch by the clock', () => src.epoch().epoch);
    scrapedGauge(registry, m('layer'), "this node's mix layer in the current document (0: not a mix in it)", () => src.epoch().layer);
    scrapedGauge(registry, m('document_epoch'), 'epoch of the document in use (-1: none)', () => src.epoch().documentEpoch);
    scrapedGauge(registry, m('sphinx_keys'), 'Sphinx keys accepted right now (2 during the grace window)', () => src.epoch().keys);
    // bounded stores: what an epoch's expiry removes (forward secrecy, and memory/disk that do not grow)
    scrapedGauge(
      registry,
      m('sphinx_key_files'),
      'Sphinx key files on disk (the previous epoch in grace, this one, and keys ahead)',
      () => src.stores().keyFiles,
    );
    scrapedGauge(registry, m('replay_epochs'), 'epochs whose replay tag set the replay store holds', () => src.stores().replayEpochs);
    counter('sphinx_key_files_deleted_total', 'Sphinx key files deleted once their epoch and grace ended', () => src.stores().keyFilesDeleted);
    counter('replay_sets_dropped_total', 'replay tag sets dropped once their epoch and grace ended', () => src.stores().replaySetsDropped);
    scrapedCounters(registry, m('descriptor_uploads_total'), 'descriptor uploads, by authority answer', 'result', () => src.uploads());
    scrapedCounters(registry, m('document_fetches_total'), 'document fetches, by outcome', 'result', () => src.fetches());
  }
}
