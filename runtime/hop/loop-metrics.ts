/**
 * Prometheus metrics of a hop's own loop cover (runtime/hop/loop-cover.ts), under the role's
 * prefix (`postmix_mixnode_`, `postmix_gateway_`): read at scrape time from LoopCover's counters.
 */
import { Histogram, type Registry } from 'prom-client';
import { scrapedCounter, scrapedGauge } from '../metrics.ts';
import type { LoopStats } from './loop-cover.ts';

export type LoopSource = () => (LoopStats & { ratio: number; inFlight: number }) | undefined;

/** Registers the loop metrics; returns the round-trip histogram (LoopCover's onRoundTrip observes it). */
export function registerLoopMetrics(registry: Registry, prefix: string, loops: LoopSource): Histogram {
  scrapedCounter(registry, `${prefix}_loops_sent_total`, 'loop cover packets this node sent', () => loops()?.sent);
  scrapedCounter(registry, `${prefix}_loops_returned_total`, 'loop cover packets that came back', () => loops()?.returned);
  scrapedCounter(registry, `${prefix}_loops_lost_total`, 'loop cover packets not back within the timeout', () => loops()?.lost);
  scrapedCounter(registry, `${prefix}_loops_failed_total`, 'loop cover packets that could not be built or sent', () => loops()?.failed);
  scrapedGauge(
    registry,
    `${prefix}_loop_success_ratio`,
    'returned / finished over the last window of finished loops (NaN before any)',
    () => loops()?.ratio ?? NaN,
  );
  scrapedGauge(registry, `${prefix}_loops_in_flight`, 'loop packets sent and not yet back or timed out', () => loops()?.inFlight ?? 0);
  return new Histogram({
    name: `${prefix}_loop_round_trip_seconds`,
    help: 'round-trip time of returned loops',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });
}
