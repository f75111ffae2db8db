/**
 * The replay check: take whole frames a mix has already received (from the link capture), send
 * them to it again from the node they came from (the testnet holds every node's keys, as an
 * attacker who recorded the link and controls the upstream node would), and read the mix's own
 * replay-drop counter. Every re-injected frame must be dropped as a replay and go no further.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PacketLink, parseMultiaddr, readRecentFrames, type CapturedFrame } from '../../runtime/link/index.ts';
import { peerIdFromString } from '@libp2p/peer-id';
import { scrape, sumMetric } from './metrics.ts';
import type { NodeRecord } from './network.ts';

export interface ReplayReport {
  readonly target: string;
  readonly sender: string;
  readonly injected: number;
  /** increase of the target's postmix_mixnode_packets_dropped_total{reason="replay"} */
  readonly dropped_as_replay: number;
  /** what was sent, in words */
  readonly note: string;
}

const REPLAY_METRIC = 'postmix_mixnode_packets_dropped_total';

/** Frames a mix received in the last `maxAgeMs` from a node the testnet holds keys for. */
function candidates(captureDir: string, nodes: readonly NodeRecord[], maxAgeMs: number): { target: NodeRecord; sender: NodeRecord; frames: CapturedFrame[] }[] {
  const byPeer = new Map(nodes.map((n) => [n.peerId, n]));
  const out: { target: NodeRecord; sender: NodeRecord; frames: CapturedFrame[] }[] = [];
  const now = Date.now();
  for (const target of nodes.filter((n) => n.kind === 'mix')) {
    const file = join(captureDir, `${target.peerId}.recent.bin`);
    if (!existsSync(file)) continue;
    const recent = readRecentFrames(file).filter((f) => now - f.at < maxAgeMs);
    const bySender = new Map<string, CapturedFrame[]>();
    for (const f of recent) if (byPeer.has(f.from)) bySender.set(f.from, [...(bySender.get(f.from) ?? []), f]);
    for (const [from, frames] of bySender) out.push({ target, sender: byPeer.get(from)!, frames });
  }
  return out.sort((a, b) => b.frames.length - a.frames.length);
}

export async function injectReplays(o: {
  captureDir: string;
  nodes: readonly NodeRecord[];
  count: number;
  /** only frames the target has had for less than this (its epoch key must still be held) */
  maxAgeMs: number;
  isAlive: (name: string) => boolean;
}): Promise<ReplayReport> {
  const pick = candidates(o.captureDir, o.nodes, o.maxAgeMs).find((c) => o.isAlive(c.target.name) && c.frames.length >= o.count);
  if (!pick) throw new Error(`replay: no live mix has ${o.count} recent frames from a known node in ${o.captureDir}`);
  const frames = pick.frames.slice(-o.count).map((f) => f.frame);
  const before = sumMetric(await scrape(pick.target.metricsUrl), REPLAY_METRIC, { reason: 'replay' });
  const targetPeer = peerIdFromString(pick.target.peerId);
  const link = await PacketLink.create({
    identity: pick.sender.identitySeed,
    listen: [],
    packetSize: frames[0]!.length,
    onFrame: () => {},
    isAllowedPeer: (p) => p.equals(targetPeer),
    addressesOf: (p) => (p.equals(targetPeer) ? [parseMultiaddr(`${pick.target.listen}/p2p/${pick.target.peerId}`)] : undefined),
  });
  try {
    for (const f of frames) if (!link.send(targetPeer, f)) throw new Error('replay: the link refused a captured frame');
  } finally {
    await link.stop(5000);
  }
  let dropped = 0;
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    dropped = sumMetric(await scrape(pick.target.metricsUrl), REPLAY_METRIC, { reason: 'replay' }) - before;
    if (dropped >= frames.length) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    target: pick.target.name,
    sender: pick.sender.name,
    injected: frames.length,
    dropped_as_replay: dropped,
    note: `${frames.length} frames ${pick.target.name} had received from ${pick.sender.name}, sent again on a new connection with ${pick.sender.name}'s identity`,
  };
}
