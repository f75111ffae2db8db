import type { PeerId } from '@libp2p/interface';
import { YamuxStream } from '@chainsafe/libp2p-yamux/stream';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, encodeFrames, FrameDecoder, FramingError } from '../../proto/link/framing.ts';
import { peerIdFromEd25519PublicKey, peerIdFromSeed } from './identity.ts';
import { generateIdentity } from '../../proto/pki/keys.ts';
import { peerIdOfIdentityKey } from '../../proto/pki/peer-id.ts';
import { RawPeer } from '../../test/support/raw-peer.ts';
import { PacketLink, SPHINX_PROTOCOL, type FrameStream, type PacketLinkOptions } from './link.ts';
import { CAPTURE_ENV, readCapturedLengths, readRecentFrames } from './capture.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SIZE = 2048;
const LOOP = ['/ip4/127.0.0.1/tcp/0'];

function seed(n: number): Uint8Array {
  return new Uint8Array(32).fill(n);
}

function frame(i: number, size = SIZE): Uint8Array {
  const f = new Uint8Array(size);
  if (size >= 4) {
    new DataView(f.buffer).setUint32(0, i);
    f.fill(i & 0xff, 4);
  }
  return f;
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const links: PacketLink[] = [];
const raws: RawPeer[] = [];
afterEach(async () => {
  await Promise.all([...links.splice(0).map((l) => l.stop(100)), ...raws.splice(0).map((r) => r.stop())]);
});

async function rawPeer(s: Uint8Array): Promise<RawPeer> {
  const r = await RawPeer.create(s);
  raws.push(r);
  return r;
}

interface Node {
  link: PacketLink;
  got: Array<{ frame: Uint8Array; from: string }>;
  observed: number[];
}

/** Nodes that all know each other (the "network document" is the set `allowed`). */
async function mkNode(n: number, allowed: Set<string>, over: Partial<PacketLinkOptions> = {}): Promise<Node> {
  const got: Node['got'] = [];
  const observed: number[] = [];
  const link = await PacketLink.create({
    identity: seed(n),
    listen: LOOP,
    packetSize: SIZE,
    onFrame: (f, from) => {
      got.push({ frame: f, from: from.toString() });
    },
    isAllowedPeer: (p) => allowed.has(p.toString()),
    addressesOf: (p) => addrBook.get(p.toString()),
    observe: (_dir, f) => observed.push(f.length),
    ...over,
  });
  links.push(link);
  addrBook.set(link.peerId.toString(), link.multiaddrs());
  return { link, got, observed };
}
const addrBook = new Map<string, ReturnType<PacketLink['multiaddrs']>>();

describe('identity', () => {
  it('derives a stable peer id from a seed, computable from the Ed25519 public key', async () => {
    const a = await peerIdFromSeed(seed(7));
    const b = await peerIdFromSeed(seed(7));
    expect(a.toString()).toBe(b.toString());
    expect((await peerIdFromSeed(seed(8))).toString()).not.toBe(a.toString());
    expect(peerIdFromEd25519PublicKey(a.publicKey!.raw).toString()).toBe(a.toString());
  });

  it("the PKI's own peer id rule (proto/pki/peer-id.ts) gives libp2p's peer id for any key", async () => {
    for (let i = 0; i < 50; i++) {
      const id = generateIdentity();
      const libp2p = (await peerIdFromSeed(id.seed)).toString();
      expect(peerIdOfIdentityKey(id.publicKey)).toBe(libp2p);
      expect(peerIdFromEd25519PublicKey(id.publicKey).toString()).toBe(libp2p);
    }
    expect(() => peerIdOfIdentityKey(new Uint8Array(31))).toThrow(/32 bytes/);
  });
});

describe('PacketLink over loopback', () => {
  it('carries frames A -> B -> C on one reused stream per neighbour, all of one size', async () => {
    const allowed = new Set<string>();
    for (const n of [1, 2, 3]) allowed.add((await peerIdFromSeed(seed(n))).toString());
    const a = await mkNode(1, allowed);
    const c = await mkNode(3, allowed);
    // B relays whatever it receives to C
    let cId: PeerId | undefined;
    const b = await mkNode(2, allowed, {
      onFrame: (f) => {
        b.got.push({ frame: f, from: '' });
        b.link.send(cId!, f);
      },
    });
    cId = c.link.peerId;
    const N = 500;
    for (let i = 0; i < N; i++) expect(a.link.send(b.link.peerId, frame(i))).toBe(true);
    await until(() => c.got.length === N, 'frames at C');
    expect(c.got.map((g) => new DataView(g.frame.buffer, g.frame.byteOffset).getUint32(0))).toEqual([...Array(N).keys()]);
    expect(c.got.every((g) => g.from === b.link.peerId.toString())).toBe(true);
    expect(c.got[7]!.frame).toEqual(frame(7));
    // every frame observed on every link has the configured length
    for (const n of [a, b, c]) {
      expect(n.observed.length).toBeGreaterThan(0);
      expect(new Set(n.observed)).toEqual(new Set([SIZE]));
    }
    expect(a.link.counters.framesOut).toBe(N);
    expect(b.link.counters.framesIn).toBe(N);
    expect(b.link.counters.framesOut).toBe(N);
    // one connection and one outbound packet stream per neighbour
    const conns = a.link.connections(b.link.peerId);
    expect(conns.length).toBe(1);
    expect(conns[0]!.protocols.filter((p) => p === SPHINX_PROTOCOL).length).toBe(1);
    expect(b.link.inboundStreamCount).toBe(1);
  });

  it('drops and counts frames of the wrong size, inbound and outbound, and keeps going', async () => {
    const allowed = new Set<string>();
    for (const n of [11, 12]) allowed.add((await peerIdFromSeed(seed(n))).toString());
    const a = await mkNode(11, allowed);
    const b = await mkNode(12, allowed);
    expect(a.link.send(b.link.peerId, frame(1, SIZE - 1))).toBe(false);
    expect(a.link.counters.droppedWrongSizeOut).toBe(1);
    // a raw stream bypassing send() (from A's key): wrong sizes interleaved with good frames
    const raw = await rawPeer(seed(11));
    const s = await raw.dialProtocol(b.link.multiaddrs(), SPHINX_PROTOCOL);
    s.send(encodeFrames([frame(1), frame(2, 10), frame(3), frame(4, SIZE + 1), frame(5, 0), frame(6)]));
    await until(() => b.got.length === 3, 'good frames');
    expect(b.link.counters.droppedWrongSizeIn).toBe(3);
    // garbage prefix: the stream is aborted, the node stays up
    s.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    await until(() => b.link.counters.streamsAbortedBadPrefix === 1, 'bad prefix abort');
    expect(a.link.send(b.link.peerId, frame(7))).toBe(true);
    await until(() => b.got.length === 4, 'frame after abuse');
    expect(new Set(b.observed)).toEqual(new Set([SIZE]));
  });

  it('capture (POSTMIX_LINK_CAPTURE) records every frame length both ways, wrong sizes included, and the recent inbound frames', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pmx-capture-'));
    process.env[CAPTURE_ENV] = dir;
    try {
      const allowed = new Set<string>();
      for (const n of [41, 42]) allowed.add((await peerIdFromSeed(seed(n))).toString());
      const a = await mkNode(41, allowed);
      const b = await mkNode(42, allowed);
      for (let i = 0; i < 5; i++) expect(a.link.send(b.link.peerId, frame(i))).toBe(true);
      await until(() => b.got.length === 5, 'frames');
      // a raw stream bypassing send(): one frame of another length must show up in the capture
      const raw = await rawPeer(seed(41));
      const s = await raw.dialProtocol(b.link.multiaddrs(), SPHINX_PROTOCOL);
      s.send(encodeFrames([frame(9, 10), frame(10)]));
      await until(() => b.got.length === 6, 'raw frames');
      // another protocol on the same link (as the mailbox) is captured too, both ways
      const served: Uint8Array[] = [];
      await b.link.handle('/test/other/1', {}, () => ({ frameSize: () => 100, onFrame: (f) => served.push(f) }));
      const other = await a.link.dial('/test/other/1', b.link.peerId, { frameSize: () => 7, onFrame: () => {} });
      expect(other.send(new Uint8Array(100))).toBe(true);
      await until(() => served.length === 1, 'frame on the other protocol');
      const [ai, bi] = [a.link.peerId.toString(), b.link.peerId.toString()];
      await Promise.all([a.link.stop(100), b.link.stop(100)]);
      const wire = encodeFrame(frame(0)).length;
      expect(readCapturedLengths(join(dir, `${ai}.lengths.json`)).links).toEqual({
        [`${SPHINX_PROTOCOL} out ${bi}`]: { [wire]: 5 },
        [`/test/other/1 out ${bi}`]: { '101': 1 },
      });
      expect(readCapturedLengths(join(dir, `${bi}.lengths.json`)).links).toEqual({
        [`${SPHINX_PROTOCOL} in ${ai}`]: { [wire]: 6, '11': 1 },
        [`/test/other/1 in ${ai}`]: { '101': 1 },
      });
      const recent = readRecentFrames(join(dir, `${bi}.recent.bin`));
      expect(recent.map((r) => r.from)).toEqual(Array(6).fill(ai));
      expect(recent.map((r) => Buffer.from(r.frame).equals(Buffer.from(b.got[recent.indexOf(r)]!.frame)))).toEqual(Array(6).fill(true));
    } finally {
      delete process.env[CAPTURE_ENV];
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves another protocol (handle/dial) to admitted peers only; a frame of the wrong size ends the stream', async () => {
    const allowed = new Set<string>();
    for (const n of [71, 72]) allowed.add((await peerIdFromSeed(seed(n))).toString());
    const b = await mkNode(71, allowed);
    const a = await mkNode(72, allowed);
    const atB: Uint8Array[] = [];
    let serverSide: FrameStream | undefined;
    await b.link.handle('/test/echo/1', {}, (st) => {
      serverSide = st;
      return {
        frameSize: () => 33,
        onFrame: (f) => {
          atB.push(f);
          st.send(new Uint8Array(64).fill(f[0]!));
        },
      };
    });
    const atA: Uint8Array[] = [];
    const st = await a.link.dial('/test/echo/1', b.link.peerId, { frameSize: () => 64, onFrame: (f) => atA.push(f) });
    expect(st.send(new Uint8Array(33).fill(7))).toBe(true);
    await until(() => atA.length === 1, 'the reply');
    expect(atA[0]).toEqual(new Uint8Array(64).fill(7));
    expect(serverSide!.peer.toString()).toBe(a.link.peerId.toString());
    // the packet protocol is the link's own: not for handle or dial
    await expect(b.link.handle(SPHINX_PROTOCOL, {}, () => ({ frameSize: () => 1, onFrame: () => {} }))).rejects.toThrow(/own protocol/);
    // a frame of another size: the receiver ends the stream and counts it
    st.send(new Uint8Array(10));
    await st.ended;
    await until(() => b.link.counters.streamsAbortedBadFrame === 1, 'bad frame counted');
    expect(st.send(new Uint8Array(33))).toBe(false);
    expect(atB.length).toBe(1);
    // a peer outside the document cannot open it
    const stranger = await mkNode(79, new Set([b.link.peerId.toString()]));
    await expect(stranger.link.dial('/test/echo/1', b.link.peerId, { frameSize: () => 64, onFrame: () => {} })).rejects.toThrow();
    expect(atB.length).toBe(1);
  });

  it('gater rejects a peer outside the network document unless unknown inbound is allowed', async () => {
    const allowed = new Set<string>();
    allowed.add((await peerIdFromSeed(seed(21))).toString());
    allowed.add((await peerIdFromSeed(seed(22))).toString());
    const b = await mkNode(21, allowed);
    const strangerKnows = new Set([b.link.peerId.toString()]);
    const stranger = await mkNode(29, strangerKnows);
    expect(stranger.link.send(b.link.peerId, frame(1))).toBe(true);
    await until(() => stranger.link.counters.droppedUnreachable === 1, 'refused dial');
    // no dial storm: within the back-off, frames to that neighbour are dropped without dialling
    const dials = stranger.link.counters.dials;
    expect(stranger.link.send(b.link.peerId, frame(1))).toBe(false);
    expect(stranger.link.counters.dials).toBe(dials);
    expect(stranger.link.counters.droppedUnreachable).toBe(2);
    expect(b.link.counters.connectionsDenied).toBeGreaterThan(0);
    expect(b.got.length).toBe(0);
    // and the node does not dial peers outside the document either
    const c = await mkNode(22, allowed);
    expect(c.link.send(stranger.link.peerId, frame(2))).toBe(true);
    await until(() => c.link.counters.dialFailures === 1, 'outbound gate');
    // a layer-1 mix accepting clients
    const l1 = await mkNode(22 + 100, allowed, { allowUnknownInbound: true });
    strangerKnows.add(l1.link.peerId.toString());
    expect(stranger.link.send(l1.link.peerId, frame(3))).toBe(true);
    await until(() => l1.got.length === 1, 'client frame at layer 1');
  });

  it('re-gates open connections when the network document drops a peer', async () => {
    const allowedByB = new Set<string>();
    const allowedByA = new Set<string>();
    const b = await mkNode(61, allowedByB);
    const a = await mkNode(62, allowedByA);
    allowedByA.add(b.link.peerId.toString());
    allowedByB.add(a.link.peerId.toString());
    a.link.send(b.link.peerId, frame(1));
    await until(() => b.got.length === 1, 'first frame');
    expect(b.link.connectionCount).toBe(1);
    expect(await b.link.enforceAllowedPeers()).toBe(0);
    allowedByB.delete(a.link.peerId.toString()); // new document without A
    expect(await b.link.enforceAllowedPeers()).toBe(1);
    await until(() => b.link.connectionCount === 0, 'connection closed');
    a.link.send(b.link.peerId, frame(2));
    await until(() => a.link.counters.droppedUnreachable >= 1, 'refused after re-gate');
    expect(b.got.length).toBe(1);
  });

  it('bounds streams per connection when a peer opens many', async () => {
    const allowed = new Set<string>();
    for (const n of [31, 32]) allowed.add((await peerIdFromSeed(seed(n))).toString());
    const b = await mkNode(31, allowed, { maxInboundStreamsPerConnection: 2, maxMuxedStreamsPerConnection: 8 });
    const a = await mkNode(32, allowed);
    const conn = await (await rawPeer(seed(32))).dial(b.link.multiaddrs());
    let opened = 0;
    let failed = 0;
    const attempts = 1000;
    const tries = [];
    for (let i = 0; i < attempts; i++) {
      tries.push(
        conn.newStream(SPHINX_PROTOCOL, { maxOutboundStreams: 10_000 }).then(
          (s) => {
            opened++;
            try {
              s.send(encodeFrame(frame(i)));
            } catch {
              // the receiver reset it: over the limit
            }
          },
          () => failed++,
        ),
      );
    }
    await Promise.all(tries);
    await until(() => b.link.inboundStreamCount <= 2, 'stream limit');
    expect(opened + failed).toBe(attempts);
    expect(failed).toBeGreaterThan(0);
    expect(b.link.inboundStreamCount).toBeLessThanOrEqual(2);
    // still serving well-behaved traffic
    const fresh = await mkNode(32 + 100, new Set([b.link.peerId.toString()]));
    allowed.add(fresh.link.peerId.toString());
    expect(fresh.link.send(b.link.peerId, frame(999))).toBe(true);
    await until(() => b.got.some((g) => g.from === fresh.link.peerId.toString()), 'frame after abuse');
  });

  it('applies backpressure to a peer that sends faster than frames are processed', async () => {
    const allowed = new Set<string>();
    for (const n of [41, 42]) allowed.add((await peerIdFromSeed(seed(n))).toString());
    const releases: Array<() => void> = [];
    const b = await mkNode(41, allowed, {
      maxPendingPerStream: 16,
      onFrame: () => new Promise<void>((r) => releases.push(r)),
    });
    const a = await mkNode(42, allowed, { maxQueuedFramesPerPeer: 100_000 });
    const N = 2000; // 4 MB offered
    for (let i = 0; i < N; i++) a.link.send(b.link.peerId, frame(i));
    await until(() => b.link.counters.inboundPauses > 0 && releases.length >= 16, 'pause');
    await new Promise((r) => setTimeout(r, 300));
    // processing stalled: the receiver holds only what the pause + flow-control window admit
    const held = b.link.counters.framesIn;
    expect(held).toBeLessThan(N);
    expect(a.link.waiting(b.link.peerId)).toBeGreaterThan(0);
    // resume processing: everything arrives, nothing lost
    const drain = setInterval(() => releases.splice(0).forEach((r) => r()), 5);
    try {
      await until(() => b.link.counters.framesIn === N, 'all frames after backpressure', 30_000);
    } finally {
      clearInterval(drain);
      releases.splice(0).forEach((r) => r());
    }
    expect(b.link.counters.droppedWrongSizeIn).toBe(0);
  });

  it('sends a yamux window update once half the receive window is used, not one per data frame', async () => {
    const allowed = new Set<string>();
    for (const n of [43, 44]) allowed.add((await peerIdFromSeed(seed(n))).toString());
    // the window updates that go out (the packet stream's filter calls this one when it lets one pass)
    const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: () => void };
    const original = proto.sendWindowUpdate;
    let updates = 0;
    proto.sendWindowUpdate = function (this: unknown) {
      updates++;
      original.call(this);
    };
    try {
      const b = await mkNode(43, allowed);
      // 8 frames (16 KiB) per stream write: ~250 data frames for 4 MB, each answered before
      const a = await mkNode(44, allowed, { maxQueuedFramesPerPeer: 100_000, maxBatchFrames: 8 });
      const N = 2000;
      for (let i = 0; i < N; i++) {
        a.link.send(b.link.peerId, frame(i));
        if (i % 8 === 7) await a.link.flushed(b.link.peerId);
      }
      await until(() => b.got.length === N, 'all frames');
      expect(b.got.map((g) => new DataView(g.frame.buffer, g.frame.byteOffset).getUint32(0))).toEqual(Array.from({ length: N }, (_, i) => i));
      // 4 MB through a 256 KiB window: one update per 128 KiB or so (and the stream's opening)
      expect(updates).toBeLessThan(45);
      expect(updates).toBeGreaterThan(4);
    } finally {
      proto.sendWindowUpdate = original;
    }
  });

  it('bounds the outbound queue per neighbour: drops and counts past the limit', async () => {
    const allowed = new Set<string>();
    for (const n of [51, 52]) allowed.add((await peerIdFromSeed(seed(n))).toString());
    const b = await mkNode(51, allowed);
    const a = await mkNode(52, allowed, { maxQueuedFramesPerPeer: 10 });
    let accepted = 0;
    for (let i = 0; i < 50; i++) if (a.link.send(b.link.peerId, frame(i))) accepted++;
    expect(accepted).toBe(10);
    expect(a.link.counters.droppedQueueFull).toBe(40);
    await until(() => b.got.length === 10, 'queued frames');
  });
});
