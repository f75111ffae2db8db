/**
 * The simulated network's nodes and routes. Nodes 0 .. L·W−1 are mixes (layer l holds
 * l·W .. l·W+W−1), nodes L·W .. L·W+G−1 are gateways. Routes follow the real client's rule
 * (one node per layer, uniform: the document carries no weights yet) under the stratified
 * topology; cascade and free-route are for comparison.
 */
import { Rng } from './rng.ts';
import type { Scenario } from './scenario.ts';

export class Network {
  readonly L: number;
  readonly W: number;
  readonly mixes: number;
  readonly gateways: number;
  readonly nodes: number;
  /** 1 for every node the adversary holds */
  readonly compromised: Uint8Array;

  constructor(
    private readonly sc: Scenario,
    private readonly rng: Rng,
  ) {
    this.L = sc.layers;
    this.W = sc.layerSize;
    this.mixes = this.L * this.W;
    this.gateways = sc.gateways;
    this.nodes = this.mixes + this.gateways;
    this.compromised = new Uint8Array(this.nodes);
    // a seeded choice, on its own stream so it does not move with the traffic's draws
    const crng = new Rng(sc.seed ^ 0x5eed);
    choose(crng, this.mixes, Math.round(sc.compromised * this.mixes)).forEach((m) => (this.compromised[m] = 1));
    const grng = new Rng(sc.seed ^ 0x6a7e);
    choose(grng, this.gateways, Math.round(sc.compromisedGateways * this.gateways)).forEach((g) => (this.compromised[this.mixes + g] = 1));
  }

  layerOf(m: number): number {
    return Math.floor(m / this.W);
  }

  isGateway(node: number): boolean {
    return node >= this.mixes;
  }

  gateway(g: number): number {
    return this.mixes + g;
  }

  randomGateway(): number {
    return this.mixes + this.rng.int(this.gateways);
  }

  /**
   * Writes `hops` mixes into `out[at ..]`, starting at layer `startLayer` (wrapping), as the
   * topology says; `chain` fixes the cascade (−1: draw one).
   */
  mixRoute(out: Int32Array, at: number, startLayer: number, hops: number, chain = -1): void {
    const sc = this.sc;
    if (sc.topology === 'free-route') {
      for (let h = 0; h < hops; h++) out[at + h] = this.rng.int(this.mixes);
      return;
    }
    const c = sc.topology === 'cascade' ? (chain >= 0 ? chain : this.rng.int(this.W)) : -1;
    for (let h = 0; h < hops; h++) {
      const layer = (startLayer + h) % this.L;
      out[at + h] = layer * this.W + (c >= 0 ? c : this.rng.int(this.W));
    }
  }
}

function choose(rng: Rng, n: number, k: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order.slice(0, k);
}
