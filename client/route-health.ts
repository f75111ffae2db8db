/**
 * Which mixes to avoid when choosing routes, learnt from the client's own loop cover only
 * (client/sender.ts says why not from ACKs). A loop that does not come back within its timeout
 * blames every node of its route; one that comes back clears every node of its route. A node
 * blamed `threshold` times in a row without being cleared is avoided while its layer has other
 * nodes. This is how the client stops feeding a dead or dropping mix before the next network
 * document removes it (the document still lists a mix that died mid-epoch: nodes publish
 * descriptors ahead of time).
 *
 * A lost loop also blames the innocent nodes it passed, and an avoided node carries no loops
 * that could clear it, so suspicion does not last: `holdMs` after its last blame a suspect is
 * used again, and one more lost loop through it makes it a suspect again at once (a circuit
 * breaker's half-open state).
 *
 * In memory only: a restarted client starts trusting every node again. The clock is the
 * scheduler's (`tick`), so tests drive it with a fake one.
 */
import { hex } from '../proto/util/bytes.ts';
export class RouteHealth {
  private readonly strikes = new Map<string, { n: number; last: number }>();
  private readonly routes = new Map<string, readonly string[]>();
  private now = 0;

  constructor(
    private readonly threshold = 2,
    private readonly holdMs = 60_000,
    private readonly maxTracked = 100_000,
  ) {}

  private static key(id: Uint8Array): string {
    return hex(id);
  }

  /** The scheduler's current time (ms). */
  tick(now: number): void {
    this.now = now;
  }

  /** Remembers the nodes a loop (identified by its loop id) went through. */
  sent(tag: Uint8Array, nodes: readonly Uint8Array[]): void {
    if (this.routes.size >= this.maxTracked) this.routes.delete(this.routes.keys().next().value!);
    this.routes.set(RouteHealth.key(tag), nodes.map(RouteHealth.key));
  }

  /** The loop came back: every node it used works. */
  succeeded(tag: Uint8Array): void {
    const k = RouteHealth.key(tag);
    for (const n of this.routes.get(k) ?? []) this.strikes.delete(n);
    this.routes.delete(k);
  }

  /** The loop never came back: blame every node it used. */
  failed(tag: Uint8Array): void {
    const k = RouteHealth.key(tag);
    for (const n of this.routes.get(k) ?? []) this.strikes.set(n, { n: (this.strikes.get(n)?.n ?? 0) + 1, last: this.now });
    this.routes.delete(k);
  }

  suspect(nodeId: Uint8Array): boolean {
    const s = this.strikes.get(RouteHealth.key(nodeId));
    return s !== undefined && s.n >= this.threshold && this.now - s.last < this.holdMs;
  }

  /** The nodes of a layer worth using: all but the suspects, or the whole layer if all are suspect. */
  usable<T extends { readonly nodeId: Uint8Array }>(layer: readonly T[]): readonly T[] {
    const ok = layer.filter((n) => !this.suspect(n.nodeId));
    return ok.length > 0 ? ok : layer;
  }

  suspects(): string[] {
    return [...this.strikes].filter(([, s]) => s.n >= this.threshold && this.now - s.last < this.holdMs).map(([k]) => k);
  }
}
