/**
 * The mix node (docs/mixnode.md): a hop (runtime/hop/hop-node.ts: link, Sphinx pipeline, epochs,
 * keys, replay tags, metrics) in the mix role, plus its loop cover.
 *
 * What is the mix's own: its descriptor says role mix and the layer it prefers; it takes client
 * connections while it is in layer 1; as a final hop it takes only its own loops (anything else
 * is dropped before its delay), which go back to the loop cover.
 */
import type { PeerId } from '@libp2p/interface';
import type { Logger } from 'pino';
import { bytesEqual } from '../proto/util/bytes.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { HopNode, type HopStartOptions } from '../runtime/hop/hop-node.ts';
import type { MixnodeConfig } from './config.ts';
import { LoopCover } from '../runtime/hop/loop-cover.ts';
import { MixnodeMetrics } from './metrics.ts';

export type MixNodeOptions = HopStartOptions<MixnodeConfig>;

export class MixNode {
  readonly hop: HopNode;
  readonly config: MixnodeConfig;
  readonly log: Logger;
  readonly metrics: MixnodeMetrics;
  readonly loops: LoopCover | undefined;

  private constructor(o: MixNodeOptions) {
    this.config = o.config;
    this.log = o.logger;
    const lc = o.config.file.loops;
    let loops: LoopCover | undefined;
    this.hop = new HopNode({
      ...o,
      metricsPrefix: 'postmix_mixnode',
      role: {
        descriptor: () => ({ role: 'mix', layerPreference: o.config.file.mixnode.layer_preference }),
        // clients send into layer 1
        acceptsClients: (view) => view.layer === 1,
        // a mix takes only its own loops as a final hop; they end here
        admitDeliver: (r) => r.surbId === undefined && loops !== undefined && bytesEqual(r.queueId, loops.queueId),
        deliver: (r) => {
          loops?.onReturn(r.payload);
        },
      },
    });
    const hop = this.hop;
    loops = lc.enabled
      ? new LoopCover({
          nodeId: hop.identity.nodeId,
          // the document as of now: during an authority outage, each node under its key for this epoch
          document: () => hop.view.documentAt(hop.now()),
          send: (first, packet) => {
            const p = hop.view.resolveNext(first.nodeId);
            return p !== undefined && hop.link.send(p.peerId, packet);
          },
          timeoutS: lc.timeout_s,
          window: lc.window,
          alertRatio: lc.alert_ratio,
          minSamples: lc.min_samples,
          log: this.log,
          onRoundTrip: (s) => this.metrics.loopRtt.observe(s),
          uniform: csprngUniform,
        })
      : undefined;
    this.loops = loops;
    this.metrics = new MixnodeMetrics(hop.registry, () => (loops ? { ...loops.stats, ratio: loops.ratio, inFlight: loops.inFlight } : undefined));
  }

  /** Starts a node: keys, replay store, link, metrics endpoint, first directory round, loops. */
  static async start(o: MixNodeOptions): Promise<MixNode> {
    const node = new MixNode(o);
    try {
      await node.hop.listen();
      node.log.info({ ...node.hop.describe(), replayStore: o.config.file.replay.store }, 'mix node listening');
      await node.hop.followEpochs();
    } catch (e) {
      await node.close(0).catch(() => {});
      throw e;
    }
    node.loops?.start();
    return node;
  }

  get peerId(): PeerId {
    return this.hop.peerId;
  }

  /** One round of the epoch machinery (also called directly by tests that move the clock). */
  tick(): Promise<void> {
    return this.hop.tick();
  }

  /**
   * Graceful shutdown: no more loops, then the hop's (stop accepting, forward what falls due
   * within most of `graceMs`, close the link, drop and count the rest).
   */
  async close(graceMs = this.config.file.mixnode.shutdown_grace_ms): Promise<{ drained: number; dropped: number }> {
    this.loops?.stop();
    const { drained, dropped, stillQueuedAtDeadline } = await this.hop.close(graceMs);
    this.log.info({ drained, dropped, stillQueuedAtDeadline }, 'mix node stopped');
    return { drained, dropped };
  }
}
