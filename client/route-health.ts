/**
 * Which mixes to avoid when choosing routes. A fragment whose ACK never came back blames
 * every node on its forward route and on its SURB's reply route; an ACK or a returning loop
 * clears every node of its routes. A node blamed `threshold` times in a row without being
 * cleared is avoided while its layer has other nodes. This is how the client stops feeding a
 * dead or dropping mix before the next network document removes it (the document still lists
 * a mix that died mid-epoch: nodes publish descriptors ahead of time).
 *
 * In memory only: a restarted client starts trusting every node again.
 */
export class RouteHealth {
  private readonly strikes = new Map<string, number>();
  private readonly routes = new Map<string, readonly string[]>();

  constructor(
    private readonly threshold = 2,
    private readonly maxTracked = 100_000,
  ) {}

  private static key(id: Uint8Array): string {
    return Buffer.from(id).toString('hex');
  }

  /** Remembers the nodes a packet (identified by its SURB id or loop id) went through. */
  sent(tag: Uint8Array, nodes: readonly Uint8Array[]): void {
    if (this.routes.size >= this.maxTracked) this.routes.delete(this.routes.keys().next().value!);
    this.routes.set(RouteHealth.key(tag), nodes.map(RouteHealth.key));
  }

  /** The packet's reply arrived: every node it used works. */
  succeeded(tag: Uint8Array): void {
    const k = RouteHealth.key(tag);
    for (const n of this.routes.get(k) ?? []) this.strikes.delete(n);
    this.routes.delete(k);
  }

  /** The packet's reply never came: blame every node it used. */
  failed(tag: Uint8Array): void {
    const k = RouteHealth.key(tag);
    for (const n of this.routes.get(k) ?? []) this.strikes.set(n, (this.strikes.get(n) ?? 0) + 1);
    this.routes.delete(k);
  }

  suspect(nodeId: Uint8Array): boolean {
    return (this.strikes.get(RouteHealth.key(nodeId)) ?? 0) >= this.threshold;
  }

  /** The nodes of a layer worth using: all but the suspects, or the whole layer if all are suspect. */
  usable<T extends { readonly nodeId: Uint8Array }>(layer: readonly T[]): readonly T[] {
    const ok = layer.filter((n) => !this.suspect(n.nodeId));
    return ok.length > 0 ? ok : layer;
  }

  suspects(): string[] {
    return [...this.strikes].filter(([, s]) => s >= this.threshold).map(([k]) => k);
  }
}
