/**
 * Adversary: whoever answers at a node's address (issue 11 point 7). The client dials its
 * layer-1 mixes and its home gateway by identity: the peer id the signed document lists, not
 * whoever listens at the address. The attacker here is a real libp2p node holding the key of
 * ANOTHER node of the document (a layer-2 mix: the gater admits document peers, so only the
 * identity check stands in its way), listening at the home gateway's and at a layer-1 mix's
 * address. It serves the mailbox protocol and `/postmix/sphinx/1` like the real nodes and
 * records what it gets: the mailbox id in a subscribe frame is a read capability (it could
 * read the client's mailbox at the real gateway and take its ACKs), and packets for the mix.
 *
 * Before 7c592fd the client dialled the document's addresses as they are and took any admitted
 * peer that answered: the impostor received the subscribe frame with the mailbox id and every
 * packet (the first case fails with that dialling). Since then the network view appends
 * `/p2p/<peer id>` to a bare address, but passed an address that already names a peer through
 * and the link took whoever answered there (the second case fails on bcfae1a's link). Now the
 * link itself dials only the peer meant and checks the remote peer; the control run with the
 * right keys at the same kind of listener gets both, so the setup is sound.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { NodeEntry, VerifiedDocument } from '../proto/pki/index.ts';
import { MAILBOX_PROTOCOL } from '../proto/mailbox/index.ts';
import { packetSizes } from '../proto/sphinx/index.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { peerIdFromSeed } from '../runtime/link/identity.ts';
import { OverlayConnection } from '../client/network.ts';
import { InProcessMixnet } from './support/in-process-mixnet.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

const seed = (b: number) => new Uint8Array(32).fill(b);
const GATEWAY = seed(0x21);
const LAYER1 = seed(0x22);
const LAYER2 = seed(0x23); // the attacker's key: a node of the document, so the gater admits it

/** A listener that serves the mailbox and packet protocols and records what reaches it. */
async function listener(identity: Uint8Array, packetSize: number) {
  const got = { subscribes: [] as Uint8Array[], frames: 0 };
  const link = await PacketLink.create({
    identity,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    packetSize,
    allowUnknownInbound: true,
    isAllowedPeer: () => true,
    onFrame: () => {
      got.frames++;
    },
  });
  await link.handle(MAILBOX_PROTOCOL, {}, () => ({ frameSize: () => 33, onFrame: (f) => got.subscribes.push(f) }));
  cleanup.push(() => link.stop());
  return {
    link,
    got,
    addr: link
      .multiaddrs()[0]!
      .toString()
      .replace(/\/p2p\/.*$/, ''),
  };
}

/** The document: layer 1 and the gateway at `l1Addr` / `gwAddr`, with their own peer ids; layer 2 has the attacker's key. */
async function document(sim: InProcessMixnet, l1Addr: string, gwAddr: string): Promise<VerifiedDocument> {
  const ids = { gw: await peerIdFromSeed(GATEWAY), l1: await peerIdFromSeed(LAYER1), l2: await peerIdFromSeed(LAYER2) };
  const at = (e: NodeEntry, id: string, addr: string): NodeEntry => ({ ...e, peerId: id, addresses: [addr] });
  const body = {
    ...sim.doc,
    layers: sim.doc.layers.map((layer, i) =>
      layer.map((e) => (i === 0 ? at(e, ids.l1.toString(), l1Addr) : i === 1 ? at(e, ids.l2.toString(), '/ip4/127.0.0.1/tcp/9') : e)),
    ),
    gateways: sim.doc.gateways.map((e) => at(e, ids.gw.toString(), gwAddr)),
  };
  return { body } as unknown as VerifiedDocument;
}

async function runClient(doc: VerifiedDocument, packetSize: number) {
  const overlay = await OverlayConnection.open({ document: doc, mailboxId: new Uint8Array(32).fill(0x5a), home: '', log: null });
  cleanup.push(() => overlay.close());
  overlay.subscribe(() => undefined);
  const l1 = doc.body.layers[0]![0]!.nodeId;
  const deadline = Date.now() + 4000;
  // a packet every 100 ms (the link drops frames for a second after a failed dial, then dials again)
  while (Date.now() < deadline) {
    overlay.sink.send(l1, new Uint8Array(packetSize).fill(7));
    await new Promise((r) => setTimeout(r, 100));
  }
  return overlay;
}

describe("adversary: a node answering at a gateway's or a mix's address with another identity", () => {
  it('gets neither the mailbox subscription (a read capability) nor the packets; the client counts the refusals', async () => {
    const sim = new InProcessMixnet({ perLayer: 1 });
    const size = packetSizes(sim.doc.geometry).packet;
    // the attacker holds layer 2's key and listens where the document says the gateway and layer 1 are
    const atGateway = await listener(LAYER2, size);
    const atLayer1 = await listener(LAYER2, size);
    const overlay = await runClient(await document(sim, atLayer1.addr, atGateway.addr), size);
    expect(atGateway.got.subscribes).toHaveLength(0);
    expect(atLayer1.got.frames).toBe(0);
    expect(overlay.mailbox!.counters.subscriptions).toBe(0);
    expect(overlay.link.counters.dialFailures).toBeGreaterThanOrEqual(2);
  }, 20_000);

  it("is not dialled at a document address that names the attacker's peer id", async () => {
    // The document's gateway and layer-1 entries keep their own peer ids, but their addresses
    // end in `/p2p/<attacker>`: a dial there completes Noise with the attacker's key, so only
    // the link's own check (an address naming another peer is skipped, the remote peer is
    // compared) keeps the subscription and the packets from it.
    const sim = new InProcessMixnet({ perLayer: 1 });
    const size = packetSizes(sim.doc.geometry).packet;
    const attacker = (await peerIdFromSeed(LAYER2)).toString();
    const atGateway = await listener(LAYER2, size);
    const atLayer1 = await listener(LAYER2, size);
    const doc = await document(sim, `${atLayer1.addr}/p2p/${attacker}`, `${atGateway.addr}/p2p/${attacker}`);
    const overlay = await runClient(doc, size);
    expect(atGateway.got.subscribes).toHaveLength(0);
    expect(atLayer1.got.frames).toBe(0);
    expect(overlay.mailbox!.counters.subscriptions).toBe(0);
    expect(overlay.link.counters.dialFailures).toBeGreaterThanOrEqual(2);
  }, 20_000);

  it('control: the nodes holding the listed keys at those addresses get the subscription and the packets', async () => {
    const sim = new InProcessMixnet({ perLayer: 1 });
    const size = packetSizes(sim.doc.geometry).packet;
    const gw = await listener(GATEWAY, size);
    const l1 = await listener(LAYER1, size);
    const overlay = await runClient(await document(sim, l1.addr, gw.addr), size);
    expect(gw.got.subscribes.length).toBeGreaterThanOrEqual(1);
    expect(Buffer.from(gw.got.subscribes[0]!.subarray(1)).equals(Buffer.from(overlay.mailboxId))).toBe(true);
    expect(l1.got.frames).toBeGreaterThan(10);
    expect(overlay.link.counters.wrongPeer).toBe(0);
  }, 20_000);
});
