/**
 * The mix node's Prometheus metrics (prefix `postmix_mixnode_`). Counters kept as plain numbers
 * on the hot path (HopEngine, PacketLink, LoopCover) are read at scrape time through `collect`,
 * so processing a packet costs no metric update except the processing-time histogram.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { newRegistry } from '../runtime/daemon.ts';
import { HOP_DROP_REASONS, type HopCounters } from '../proto/hop/engine.ts';
import type { LinkCounters } from '../runtime/link/index.ts';
import type { LoopStats } from './loops.ts';

export interface MetricSources {
  hop(): HopCounters | undefined;
  queue(): { packets: number; bytes: number };
  link(): LinkCounters | undefined;
  connections(): number;
  loops(): (LoopStats & { ratio: number; inFlight: number }) | undefined;
  epoch(): { epoch: number; layer: number; documentEpoch: number; keys: number };
}

/** Extra drops the daemon counts itself (outside the HopEngine). */
export const NODE_DROP_REASONS = ['link-refused'] as const;

export class MixnodeMetrics {
  readonly registry: Registry;
  readonly processing: Histogram;
  readonly loopRtt: Histogram;
  readonly lateness: Histogram;
  readonly uploads: Counter<'result'>;
  readonly documents: Counter<'result'>;
  /** Daemon-side drop counts, merged into postmix_mixnode_packets_dropped_total. */
  readonly nodeDrops: Record<(typeof NODE_DROP_REASONS)[number], number> = { 'link-refused': 0 };

  constructor(src: MetricSources, opts: { defaultMetrics?: boolean } = {}) {
    const r = (this.registry = newRegistry('postmix_mixnode', opts.defaultMetrics ?? true));
    const reg = [r];
    const self = this;
    const counter = (name: string, help: string, read: () => number | undefined) =>
      new Counter({
        name,
        help,
        registers: reg,
        collect() {
          const v = read();
          this.reset();
          if (v !== undefined) this.inc(v);
        },
      });
    counter('postmix_mixnode_packets_received_total', 'Sphinx frames handed to the packet pipeline', () => src.hop()?.received);
    counter('postmix_mixnode_packets_forwarded_total', 'packets sent on to the next hop after their delay', () => src.hop()?.forwarded);
    counter('postmix_mixnode_packets_delivered_total', "final-hop packets taken here (this node's own returning loops)", () => src.hop()?.delivered);
    counter('postmix_mixnode_cover_ended_total', 'drop cover that ended at this node', () => src.hop()?.coverEnded);
    new Counter({
      name: 'postmix_mixnode_packets_dropped_total',
      help: 'packets dropped, by reason (never answered)',
      labelNames: ['reason'],
      registers: reg,
      collect() {
        this.reset();
        const h = src.hop();
        for (const reason of HOP_DROP_REASONS) this.inc({ reason }, h?.dropped[reason] ?? 0);
        for (const reason of NODE_DROP_REASONS) this.inc({ reason }, self.nodeDrops[reason]);
        const l = src.link();
        this.inc({ reason: 'wrong-size-frame' }, l?.droppedWrongSizeIn ?? 0);
      },
    });
    new Gauge({
      name: 'postmix_mixnode_queue_packets',
      help: 'packets held in the delay queue',
      registers: reg,
      collect() {
        this.set(src.queue().packets);
      },
    });
    new Gauge({
      name: 'postmix_mixnode_queue_bytes',
      help: 'bytes held in the delay queue (bounded by limits.max_queued_bytes)',
      registers: reg,
      collect() {
        this.set(src.queue().bytes);
      },
    });
    this.processing = new Histogram({
      name: 'postmix_mixnode_processing_seconds',
      help: 'time to process one frame (Sphinx layer, replay check, queueing)',
      buckets: [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
      registers: reg,
    });
    this.lateness = new Histogram({
      name: 'postmix_mixnode_scheduler_lateness_seconds',
      help: 'how late packets leave the delay queue after the time their header named',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
      registers: reg,
    });
    // link
    const linkCounter = (name: string, help: string, key: keyof LinkCounters) => counter(name, help, () => src.link()?.[key]);
    new Counter({
      name: 'postmix_mixnode_link_frames_total',
      help: 'frames crossing the packet link',
      labelNames: ['direction'],
      registers: reg,
      collect() {
        this.reset();
        const l = src.link();
        this.inc({ direction: 'in' }, l?.framesIn ?? 0);
        this.inc({ direction: 'out' }, l?.framesOut ?? 0);
      },
    });
    new Counter({
      name: 'postmix_mixnode_link_bytes_total',
      help: 'frame bytes crossing the packet link',
      labelNames: ['direction'],
      registers: reg,
      collect() {
        this.reset();
        const l = src.link();
        this.inc({ direction: 'in' }, l?.bytesIn ?? 0);
        this.inc({ direction: 'out' }, l?.bytesOut ?? 0);
      },
    });
    new Counter({
      name: 'postmix_mixnode_link_dropped_total',
      help: 'frames the link dropped, by reason',
      labelNames: ['reason'],
      registers: reg,
      collect() {
        this.reset();
        const l = src.link();
        this.inc({ reason: 'wrong-size-in' }, l?.droppedWrongSizeIn ?? 0);
        this.inc({ reason: 'wrong-size-out' }, l?.droppedWrongSizeOut ?? 0);
        this.inc({ reason: 'queue-full' }, l?.droppedQueueFull ?? 0);
        this.inc({ reason: 'unreachable' }, l?.droppedUnreachable ?? 0);
      },
    });
    linkCounter('postmix_mixnode_link_streams_aborted_total', 'inbound streams aborted for a bad length prefix', 'streamsAbortedBadPrefix');
    linkCounter('postmix_mixnode_link_streams_refused_total', 'inbound streams refused (peer not allowed)', 'streamsRefused');
    linkCounter('postmix_mixnode_link_connections_denied_total', 'connections refused by the gater (peer not in the document)', 'connectionsDenied');
    linkCounter('postmix_mixnode_link_inbound_pauses_total', 'inbound streams paused for backpressure', 'inboundPauses');
    linkCounter('postmix_mixnode_link_dials_total', 'outbound dials', 'dials');
    linkCounter('postmix_mixnode_link_dial_failures_total', 'failed outbound dials', 'dialFailures');
    new Gauge({
      name: 'postmix_mixnode_link_connections',
      help: 'open libp2p connections',
      registers: reg,
      collect() {
        this.set(src.connections());
      },
    });
    // loops
    counter('postmix_mixnode_loops_sent_total', 'loop cover packets this node sent', () => src.loops()?.sent);
    counter('postmix_mixnode_loops_returned_total', 'loop cover packets that came back', () => src.loops()?.returned);
    counter('postmix_mixnode_loops_lost_total', 'loop cover packets not back within the timeout', () => src.loops()?.lost);
    counter('postmix_mixnode_loops_failed_total', 'loop cover packets that could not be built or sent', () => src.loops()?.failed);
    new Gauge({
      name: 'postmix_mixnode_loop_success_ratio',
      help: 'returned / finished over the last loops.window finished loops (NaN before any)',
      registers: reg,
      collect() {
        this.set(src.loops()?.ratio ?? NaN);
      },
    });
    new Gauge({
      name: 'postmix_mixnode_loops_in_flight',
      help: 'loop packets sent and not yet back or timed out',
      registers: reg,
      collect() {
        this.set(src.loops()?.inFlight ?? 0);
      },
    });
    this.loopRtt = new Histogram({
      name: 'postmix_mixnode_loop_round_trip_seconds',
      help: 'round-trip time of returned loops',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: reg,
    });
    // epochs and directory
    const ep = (name: string, help: string, key: 'epoch' | 'layer' | 'documentEpoch' | 'keys') =>
      new Gauge({
        name,
        help,
        registers: reg,
        collect() {
          this.set(src.epoch()[key]);
        },
      });
    ep('postmix_mixnode_epoch', 'current epoch by the clock', 'epoch');
    ep('postmix_mixnode_layer', "this node's layer in the current document (0: not in it)", 'layer');
    ep('postmix_mixnode_document_epoch', 'epoch of the document in use (-1: none)', 'documentEpoch');
    ep('postmix_mixnode_sphinx_keys', 'Sphinx keys accepted right now (2 during the grace window)', 'keys');
    this.uploads = new Counter({
      name: 'postmix_mixnode_descriptor_uploads_total',
      help: 'descriptor uploads, by authority answer',
      labelNames: ['result'],
      registers: reg,
    });
    this.documents = new Counter({
      name: 'postmix_mixnode_document_fetches_total',
      help: 'document fetches, by outcome',
      labelNames: ['result'],
      registers: reg,
    });
  }
}
