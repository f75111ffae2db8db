/**
 * The client against the REAL gateway (gateway/daemon.ts) over libp2p on loopback: swaks submits
 * to the client's SMTP intake; the client sends Sphinx packets through a layer of relay mixes
 * (a minimal test relay: real Sphinx processing, no delay, until the mix node lands) to the
 * gateway, which checks the POPRF token, reassembles, hands the message to an SMTP sink (the MX)
 * and ACKs every fragment through its SURB back to the client's mailbox. One of the two relays
 * drops everything, so the client must resend some fragments on the other route.
 * The gateway's document is installed directly (no directory authorities in this test).
 */
import { swaks } from './support/processes.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerIdFromString } from '@libp2p/peer-id';
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import { afterAll, describe, expect, it } from 'vitest';
import { PacketLink, parseMultiaddr } from '../runtime/link/index.ts';
import { epochAt, generateSphinxKey, type DocumentBody, type NodeEntry, type VerifiedDocument } from '../proto/pki/index.ts';
import { KeyStore } from '../runtime/pki/key-store.ts';
import { DEFAULT_GEOMETRY, nodeSuite, packetSizes, prepareHopKey, processPacket } from '../proto/sphinx/index.ts';
import { finalizeTokens, issueTokens, makeBundle, requestTokens } from '../proto/tokens/index.ts';
import { createLogger } from '../runtime/daemon.ts';
import { loadGatewayConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/daemon.ts';
import { ClientConfigSchema } from '../client/config.ts';
import { runClient } from '../client/daemon.ts';
import { OverlayConnection } from '../client/network.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) {
    try {
      await f();
    } catch {
      /* best effort */
    }
  }
}, 30_000);

const BOB = 'bob@example.org';

describe('client → relay mixes → real gateway → MX', () => {
  it('a swaks-submitted message arrives byte-identical; a black-hole mix makes the client resend on the other route', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postmix-client-gw-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    // the MX
    const got: Buffer[] = [];
    const sink = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData(stream, _s, cb) {
        const c: Buffer[] = [];
        stream.on('data', (x: Buffer) => c.push(x));
        stream.on('end', () => {
          got.push(Buffer.concat(c));
          cb();
        });
      },
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => sink.close(() => r())));
    const sinkPort = (sink.server.address() as { port: number }).port;
    // the gateway
    KeyStore.create(join(dir, 'gw', 'keys'), { force: false, epochs: [] });
    const gwCfg = join(dir, 'gateway.toml');
    writeFileSync(
      gwCfg,
      `[gateway]\ndata_dir = "gw"\nlisten = "/ip4/127.0.0.1/tcp/0"\ndomains = ["example.org"]\nlog_level = "silent"\ntick_ms = 100\n` +
        `[mx]\nhost = "127.0.0.1"\nport = ${sinkPort}\nstarttls = "never"\n[issuance]\nport = 0\n[metrics]\nport = 0\n` +
        `[directory]\nthreshold = 1\ntimeout_ms = 200\n[[directory.authorities]]\nurl = "http://127.0.0.1:9"\npublic_key = "${Buffer.alloc(32, 1).toString('base64')}"\n`,
    );
    const gw = await Gateway.start({ config: loadGatewayConfig(gwCfg), logger: createLogger('gateway', 'silent'), defaultMetrics: false });
    cleanup.push(() => gw.close());
    gw.store.addUser(BOB);
    const epoch = epochAt(gw.config.epoch, gw.hop.now());
    // no authorities here: make this epoch's Sphinx key as the upload for it would have
    gw.hop.keys.ensure([epoch]);
    const packetSize = packetSizes(DEFAULT_GEOMETRY).packet;

    // two layer-1 relays: one forwards (real Sphinx processing), one drops everything
    let entries: NodeEntry[] = [];
    const relays: { link: PacketLink; entry: NodeEntry; received: number }[] = [];
    for (let i = 0; i < 2; i++) {
      const key = generateSphinxKey(epoch);
      const hop = prepareHopKey(nodeSuite, key.secretKey);
      const r = { link: null as unknown as PacketLink, entry: null as unknown as NodeEntry, received: 0 };
      const forwards = i === 0;
      r.link = await PacketLink.create({
        identity: new Uint8Array(32).fill(40 + i),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        packetSize,
        allowUnknownInbound: true,
        isAllowedPeer: () => true,
        addressesOf: (p) => entries.find((e) => e.peerId === p.toString())?.addresses.map((a) => parseMultiaddr(a)),
        onFrame: (frame) => {
          r.received++;
          if (!forwards) return;
          const res = processPacket(DEFAULT_GEOMETRY, hop, frame);
          if (!res.ok || res.kind !== 'forward') return;
          const next = entries.find((e) => Buffer.from(e.nodeId).equals(Buffer.from(res.next)));
          if (next) r.link.send(peerIdFromString(next.peerId), res.packet);
        },
      });
      cleanup.push(() => r.link.stop());
      r.entry = {
        nodeId: new Uint8Array(32).fill(0xa0 + i),
        identityKey: new Uint8Array(32).fill(0xb0 + i),
        peerId: r.link.peerId.toString(),
        addresses: r.link.multiaddrs().map(String),
        sphinxKey: key.publicKey,
        sphinxKeysAhead: [],
        layer: 1,
      };
      relays.push(r);
    }
    const gwEntry: NodeEntry = {
      nodeId: gw.hop.identity.nodeId,
      identityKey: gw.hop.identity.publicKey,
      peerId: gw.hop.link.peerId.toString(),
      addresses: gw.hop.link.multiaddrs().map(String),
      sphinxKey: gw.hop.keyStore.sphinxKey(epoch)!.publicKey,
      sphinxKeysAhead: [],
      layer: 0,
      gateway: { domains: ['example.org'], issuerKeys: [{ keyEpoch: 0, publicKey: gw.issuer.publicKey }], keyDirectoryUrl: '', policy: 'token-required' },
    };
    entries = [...relays.map((r) => r.entry), gwEntry];
    const doc: DocumentBody = {
      version: 1,
      epoch,
      // one epoch that spans every test's clock, so the document is current whenever it is read
      validAfter: 0,
      freshUntil: 2 ** 31,
      validUntil: 2 ** 31,
      epochLength: 2 ** 31,
      grace: 600,
      geometry: DEFAULT_GEOMETRY,
      mixing: { lambdaP: 40, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 50 },
      layers: [relays.map((r) => r.entry)],
      gateways: [gwEntry],
      authorities: [],
      threshold: 1,
      previousDigest: new Uint8Array(32),
    };
    gw.hop.installDocument({ body: doc } as unknown as VerifiedDocument);

    // the client, with real tokens from the gateway's issuer
    const cfg = ClientConfigSchema.parse({
      data_dir: join(dir, 'client'),
      smtp: { port: 0, user: 'alice', password: 'secret' },
      routing: { overlay_only: true },
      bounce: { maildir: join(dir, 'Maildir') },
      // short ACK timeout, its doubling capped at 1 s, so the black-holed fragments are resent
      // quickly. An attempt succeeds only when both the forward route and the SURB's route use the
      // good relay (p = 1/4; without cover the client learns nothing about the black hole), hence
      // the generous attempt limit: 0.75^40 ≈ 1e-5 per fragment.
      overlay: { max_attempts: 40, timeout_factor: 1, timeout_margin_ms: 800, timeout_max_s: 1, cover: false },
    });
    const overlay = await OverlayConnection.open({
      document: { body: doc } as VerifiedDocument,
      mailboxId: new Uint8Array(32).fill(0x5a),
      home: 'example.org',
      log: null,
    });
    cleanup.push(() => overlay.close());
    const client = await runClient(cfg, { log: pino({ level: 'silent' }), network: overlay, maxSleepMs: 20 });
    cleanup.push(() => client.stop());
    const keyEpoch = gw.store.schedule(BOB, Math.floor(Date.now() / 1000)).current.keyEpoch;
    const st = requestTokens(gw.issuer.publicKey, BOB, keyEpoch, 2);
    const tokens = finalizeTokens(st, issueTokens(gw.issuer, BOB, keyEpoch, st.blinded));
    client.core.wallet.importBundle(JSON.stringify(makeBundle(BOB, gw.issuer.publicKey, tokens)));

    const raw =
      'From: Alice <alice@sender.test>\r\nTo: bob@example.org\r\nSubject: through the overlay\r\nMessage-ID: <overlay.1@sender.test>\r\n' +
      'Date: Mon, 23 Nov 2026 03:00:00 +0000\r\nContent-Type: application/pgp-encrypted\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n' +
      Array.from({ length: 120 }, (_, i) => `line ${i} ${'A'.repeat(60)}`).join('\r\n') +
      '\r\n.\r\n..dots\r\n-----END PGP MESSAGE-----\r\n';
    const file = join(dir, 'msg.eml');
    writeFileSync(file, raw.slice(0, -2)); // swaks adds the final CRLF before "."
    const sw = await swaks({ port: client.smtpPort, auth: { user: 'alice', password: 'secret' }, from: 'alice@sender.test', to: BOB, file });
    expect(sw.stdout).toMatch(/250-2\.0\.0 Ok: queued as/);
    expect(sw.code).toBe(0);
    const id = /queued as (\S+)/.exec(sw.stdout)![1]!;
    const n = client.core.outbox.recipient(id, BOB)!.fragmentCount;
    expect(n).toBeGreaterThan(3);
    const end = Date.now() + 45_000;
    while ((got.length === 0 || client.core.outbox.message(id)!.state !== 'done') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    if (client.core.outbox.recipient(id, BOB)!.state !== 'delivered')
      console.log(
        JSON.stringify({
          stats: client.core.stats,
          relays: relays.map((r) => r.received),
          engine: gw.hop.engine.counters,
          intake: gw.intake.counters,
          link: gw.hop.link.counters,
          r: client.core.outbox.recipient(id, BOB)?.error,
          frags: client.core.outbox.fragments(id, BOB).map((f) => f.state + f.attempts),
        }),
      );
    expect(got).toHaveLength(1);
    expect(got[0]!.toString('latin1')).toBe(raw);
    expect(client.core.outbox.message(id)!.state).toBe('done');
    expect(client.core.outbox.recipient(id, BOB)!.state).toBe('delivered');
    // the black hole took some first attempts; those fragments went again through the other relay
    expect(relays[1]!.received).toBeGreaterThan(0);
    expect(client.core.stats.resent).toBeGreaterThan(0);
    expect(client.core.stats.acks).toBeGreaterThanOrEqual(n);
  }, 90_000);
});
