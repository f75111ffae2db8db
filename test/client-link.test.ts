/**
 * The client's real network wiring (client/network.ts) over libp2p on loopback: packets go to a
 * layer-1 peer over `/postmix/sphinx/1` (runtime/link), and ACKs come back through the real
 * mailbox server (runtime/mailbox/server.ts, over a gateway store) and subscriber on
 * `/postmix/mailbox/3`. Behind the layer-1 peer the rest of the route is the in-process mixnet
 * with real Sphinx processing and the real gateway intake (test/support/in-process-mixnet.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { NodeEntry, VerifiedDocument } from '../proto/pki/index.ts';
import { nodeSuite, packetSizes } from '../proto/sphinx/index.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { MailboxServer } from '../runtime/mailbox/server.ts';
import { ClientCore } from '../client/core.ts';
import { OverlayConnection } from '../client/network.ts';
import { InProcessMixnet } from './support/in-process-mixnet.ts';
import { GatewayStore } from '../gateway/store.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

describe('client network wiring over real libp2p', () => {
  it('sends fragments to the layer-1 peer and takes ACKs from the home gateway mailbox', async () => {
    const sim = new InProcessMixnet({ perLayer: 1, mixing: { lambdaP: 50, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 10 } });
    const packetSize = packetSizes(sim.doc.geometry).packet;
    const layer1 = sim.layers[0]![0]!.entry;
    // the layer-1 "mix": a real PacketLink whose frames enter the in-process network
    const mix = await PacketLink.create({
      identity: new Uint8Array(32).fill(1),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      packetSize,
      allowUnknownInbound: true,
      isAllowedPeer: () => true,
      onFrame: (frame) => sim.send(layer1.nodeId, frame),
    });
    cleanup.push(() => mix.stop());
    // the home gateway's mailbox service: a real link serving /postmix/mailbox/3 from a gateway store
    const gw = await PacketLink.create({
      identity: new Uint8Array(32).fill(2),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      packetSize,
      allowUnknownInbound: true,
      isAllowedPeer: () => true,
      onFrame: () => undefined,
    });
    cleanup.push(() => gw.stop());
    const store = new GatewayStore(':memory:');
    cleanup.push(() => store.close());
    const mailboxes = new MailboxServer({
      store,
      ttlMs: 60_000,
      maxItems: 1000,
      payloadSize: () => sim.doc.geometry.payloadSize,
      // fast ticks, so the test does not wait on the pacer
      mixing: () => ({ lambdaP: 50, lambdaL: 0 }),
      now: () => Date.now(),
      log: { debug() {} },
    });
    await mailboxes.serve(gw);
    mailboxes.start();
    cleanup.push(() => mailboxes.close());
    sim.mailboxSink = (id, item) => mailboxes.put(id, item);

    const withPeer = (e: NodeEntry, l: PacketLink): NodeEntry => ({ ...e, peerId: l.peerId.toString(), addresses: l.multiaddrs().map(String) });
    const doc = {
      ...sim.doc,
      layers: sim.doc.layers.map((layer, i) => (i === 0 ? layer.map((e) => withPeer(e, mix)) : layer)),
      gateways: sim.doc.gateways.map((e) => withPeer(e, gw)),
    };
    const dir = mkdtempSync(join(tmpdir(), 'postmix-client-link-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const overlay = await OverlayConnection.open({
      document: { body: doc } as unknown as VerifiedDocument,
      mailboxId: new Uint8Array(32).fill(0x33),
      home: '',
      log: null,
    });
    cleanup.push(() => overlay.close());
    const core = new ClientCore({
      outboxPath: join(dir, 'outbox.sqlite'),
      suite: nodeSuite,
      network: overlay,
      policy: { overlayOnly: true, overlayOnlyRecipients: [] },
      strip: {},
      smarthost: null,
      bounceMaildir: join(dir, 'Maildir'),
      cover: false,
      uniform: csprngUniform,
    });
    cleanup.push(() => core.close());
    overlay.subscribe((item) => core.onMailboxItem(item));

    core.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
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
    // the subscription named this client's mailbox, and every ACK came through it
    expect(mailboxes.subscribed).toBe(1);
    expect(store.mailboxSize(overlay.mailboxId)).toBe(0);
    expect(overlay.mailbox!.counters.items).toBe(n);
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(raw))).toBe(true);
    expect(core.stats.acks).toBe(n);
    expect(mix.counters.framesIn).toBe(n);
  });
});
