/**
 * The mix node's own Prometheus metrics (prefix `postmix_mixnode_`): its loop cover
 * (runtime/hop/loop-metrics.ts, shared with the gateway's). The hop's metrics (pipeline, delay
 * queue, link, epochs, directory) are runtime/hop/metrics.ts, in the same registry.
 */
import type { Histogram, Registry } from 'prom-client';
import { registerLoopMetrics, type LoopSource } from '../runtime/hop/loop-metrics.ts';

export class MixnodeMetrics {
  readonly loopRtt: Histogram;

  constructor(
    readonly registry: Registry,
    loops: LoopSource,
  ) {
    this.loopRtt = registerLoopMetrics(registry, 'postmix_mixnode', loops);
  }
}
