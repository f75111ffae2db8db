/**
 * The mix node's own Prometheus metrics (prefix `postmix_mixnode_`): its loop cover. The hop's
 * metrics (pipeline, delay queue, link, epochs, directory) are runtime/hop/metrics.ts, in the
 * same registry. Read at scrape time from LoopCover's counters (runtime/metrics.ts).
 */
import { Histogram, type Registry } from 'prom-client';
import { scrapedCounter, scrapedGauge } from '../runtime/metrics.ts';
import type { LoopStats } from './loops.ts';

export class MixnodeMetrics {
  readonly loopRtt: Histogram;

  constructor(
    readonly registry: Registry,
    loops: () => (LoopStats & { ratio: number; inFlight: number }) | undefined,
  ) {
    scrapedCounter(registry, 'postmix_mixnode_loops_sent_total', 'loop cover packets this node sent', () => loops()?.sent);
    scrapedCounter(registry, 'postmix_mixnode_loops_returned_total', 'loop cover packets that came back', () => loops()?.returned);
    scrapedCounter(registry, 'postmix_mixnode_loops_lost_total', 'loop cover packets not back within the timeout', () => loops()?.lost);
    scrapedCounter(registry, 'postmix_mixnode_loops_failed_total', 'loop cover packets that could not be built or sent', () => loops()?.failed);
    scrapedGauge(
      registry,
      'postmix_mixnode_loop_success_ratio',
      'returned / finished over the last loops.window finished loops (NaN before any)',
      () => loops()?.ratio ?? NaN,
    );
    scrapedGauge(registry, 'postmix_mixnode_loops_in_flight', 'loop packets sent and not yet back or timed out', () => loops()?.inFlight ?? 0);
    this.loopRtt = new Histogram({
      name: 'postmix_mixnode_loop_round_trip_seconds',
      help: 'round-trip time of returned loops',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    });
  }
}
