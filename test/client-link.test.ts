/**
 * The client's real network wiring (client/network.ts) over libp2p on loopback: packets go to a
 * layer-1 peer over `/postmix/sphinx/1` (proto/link), and ACKs come back over a
 * `/postmix/mailbox/2` subscription to the home gateway. Behind the layer-1 peer the rest of the
 * route is the in-process simulated mixnet with real Sphinx processing (client/testing.ts), until
 * the real mixes and gateway can be started from a test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as lp from 'it-length-prefixed';
import { afterAll, describe, expect, it } from 'vitest';
import type { NodeEntry } from '../proto/pki/codec.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { MAILBOX_PROTOCOL, decodeSubscribe, encodeItem } from '../proto/mailbox/index.ts';
import { nodeSuite, packetSizes } from '../proto/sphinx/index.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { ClientCore } from '../client/core.ts';
import { StaticNetwork, attachLink, type AttachedLink } from '../client/network.ts';
import { SimNet, fakeBundle } from '../client/testing.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

describe('client network wiring over real libp2p', () => {
  it('sends fragments to the layer-1 peer and takes ACKs from the home gateway mailbox', async () => {
    const sim = new SimNet({ perLayer: 1, mixing: { lambdaP: 50, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 10 } });
    const packetSize = packetSizes(sim.doc.geometry).packet;
    const layer1 = sim.layers[0]![0]!.entry;
    // the layer-1 "mix": a real PacketLink whose frames enter the simulated network
    const mix = await PacketLink.create({
      identity: new Uint8Array(32).fill(1),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      packetSize,
      allowUnknownInbound: true,
      isAllowedPeer: () => true,
      onFrame: (frame) => sim.send(layer1.nodeId, frame),
    });
    cleanup.push(() => mix.stop());
    // the home gateway's mailbox service: a real libp2p node serving /postmix/mailbox/2
    const gw = await PacketLink.create({
      identity: new Uint8Array(32).fill(2),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      packetSize,
      allowUnknownInbound: true,
      isAllowedPeer: () => true,
      onFrame: () => undefined,
    });
    cleanup.push(() => gw.stop());
    let subscribed: Uint8Array | null = null;
    await gw.libp2pNode.handle(MAILBOX_PROTOCOL, async (stream) => {
      for await (const frame of lp.decode(stream)) {
        subscribed = decodeSubscribe(frame.subarray());
        break;
      }
      const id = subscribed!;
      const timer = setInterval(() => {
        for (const item of sim.fetch(id)) stream.send(lp.encode.single(encodeItem(item, sim.doc.geometry.payloadSize)).subarray());
      }, 20);
      stream.addEventListener('close', () => clearInterval(timer));
      cleanup.push(() => clearInterval(timer));
    });

    const withPeer = (e: NodeEntry, l: PacketLink): NodeEntry => ({ ...e, peerId: l.peerId.toString(), addresses: l.multiaddrs().map(String) });
    const doc = {
      ...sim.doc,
      layers: sim.doc.layers.map((layer, i) => (i === 0 ? layer.map((e) => withPeer(e, mix)) : layer)),
      gateways: sim.doc.gateways.map((e) => withPeer(e, gw)),
    };
    const dir = mkdtempSync(join(tmpdir(), 'postmix-client-link-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const net = new StaticNetwork(doc, { send: () => undefined }, new Uint8Array(32).fill(0x33));
    const core = new ClientCore({
      outboxPath: join(dir, 'outbox.sqlite'),
      suite: nodeSuite,
      network: net,
      policy: { overlayOnly: true, overlayOnlyRecipients: [] },
      strip: {},
      smarthost: null,
      bounceMaildir: join(dir, 'Maildir'),
      cover: false,
      uniform: csprngUniform,
    });
    cleanup.push(() => core.close());
    let attached: AttachedLink | null = null;
    attached = await attachLink(net, (item) => core.onMailboxItem(item), null);
    cleanup.push(() => attached!.stop());

    core.wallet.importBundle(fakeBundle('bob@overlay.test', 1));
    const raw = new Uint8Array(Buffer.from('From: a@sender.test\r\nTo: bob@overlay.test\r\nSubject: over libp2p\r\n\r\n' + 'x'.repeat(9000) + '\r\n'));
    const id = core.accept('a@sender.test', ['bob@overlay.test'], raw);
    const n = core.outbox.recipient(id, 'bob@overlay.test')!.fragmentCount;
    expect(n).toBeGreaterThan(1);
    const end = Date.now() + 30_000;
    while (core.outbox.message(id)!.state !== 'done' && Date.now() < end) {
      core.tick(Date.now());
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(core.outbox.message(id)!.state).toBe('done');
    expect(Buffer.from(subscribed!).equals(Buffer.from(net.mailboxId))).toBe(true);
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(raw))).toBe(true);
    expect(core.stats.acks).toBe(n);
    expect(mix.counters.framesIn).toBe(n);
  });
});
