/**
 * The gateway daemon over a real libp2p link on loopback: a Sphinx packet carrying a fragment
 * arrives, is processed at the final hop, checked (token), reassembled, queued and handed to an
 * SMTP sink; a replayed packet is dropped; a packet for a client mailbox waits until the client
 * subscribes over /postmix/mailbox/3 (then dummies, all one size); the issuance endpoint issues tokens to an authenticated
 * user; the admin CLI manages users, tokens and the queue.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import * as lp from 'it-length-prefixed';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AckStatus, decodePayload, encodeDecoy, encodeFragment } from '../proto/fragment/index.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { MAILBOX_PROTOCOL, MAIL_QUEUE_ID, decodeItem, encodeSubscribe, mailboxItemSize } from '../proto/mailbox/index.ts';
import { epochAt, epochStart, generateSphinxKey, type VerifiedDocument } from '../proto/pki/index.ts';
import { KeyStore } from '../runtime/pki/key-store.ts';
import {
  createPacket,
  createSurb,
  openSurbReply,
  packetFromSurb,
  prepareHopKey,
  processPacket,
  DEFAULT_GEOMETRY,
  nodeSuite,
  packetSizes,
} from '../proto/sphinx/index.ts';
import { finalizeTokens, parseBundle, requestTokens, tokenCheckBackend, verifyToken } from '../proto/tokens/index.ts';
import { createLogger } from '../runtime/daemon.ts';
import { registerGateway } from '../cli/gateway.ts';
import { loadGatewayConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/daemon.ts';
import { GatewayStore } from '../gateway/store.ts';
import { messageFragments } from './support/fragments.ts';
import { RawPeer } from './support/raw-peer.ts';

const run = promisify(execFile);
const BOB = 'bob@example.org';
let dir: string;
let cfgPath: string;
let sink: SMTPServer;
let sinkPort = 0;
const got: Buffer[] = [];

/** The real binary (slow to start: used once). */
async function cliProcess(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await run(process.execPath, ['bin/postmix.js', 'gateway', ...args], { cwd: process.cwd(), timeout: 30_000 });
    return { ...r, code: 0 };
  } catch (e) {
    const err = e as { stdout: string; stderr: string; code: number };
    return { stdout: err.stdout, stderr: err.stderr, code: err.code };
  }
}

/** The same commands in-process (commander program with registerGateway). */
async function cli(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const program = new Command('postmix').exitOverride();
  registerGateway(program);
  let stdout = '';
  let stderr = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((c: string | Uint8Array) => ((stdout += c.toString()), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((stderr += c.toString()), true)) as typeof process.stderr.write;
  process.exitCode = 0;
  try {
    await program.parseAsync(['node', 'postmix', 'gateway', ...args]);
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { stdout, stderr, code };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-gwd-'));
  sink = new SMTPServer({
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
  sinkPort = (sink.server.address() as { port: number }).port;
  KeyStore.create(join(dir, 'data', 'keys'), { force: false, epochs: [] });
  cfgPath = join(dir, 'gateway.toml');
  writeFileSync(
    cfgPath,
    `[gateway]
data_dir = "data"
listen = "/ip4/127.0.0.1/tcp/0"
domains = ["example.org"]
log_level = "silent"
tick_ms = 200
[mx]
host = "127.0.0.1"
port = ${sinkPort}
starttls = "never"
[issuance]
port = 0
[metrics]
port = 0
[directory]
threshold = 1
timeout_ms = 200
[[directory.authorities]]
url = "http://127.0.0.1:9"
public_key = "${Buffer.alloc(32, 1).toString('base64')}"
`,
  );
});

afterAll(async () => {
  await new Promise<void>((r) => sink.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe('postmix gateway (CLI admin)', () => {
  it('user add / list / rotate, tokens issue, queue list', async () => {
    const add = await cliProcess('user', 'add', '-c', cfgPath, BOB);
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(/secret: [A-Za-z0-9_-]{43}/);
    expect((await cli('user', 'add', '-c', cfgPath, 'eve@elsewhere.net')).code).not.toBe(0);
    const out = join(dir, 'bundle.json');
    const iss = await cli('tokens', 'issue', '-c', cfgPath, '--user', BOB, '--count', '3', '--out', out);
    expect(iss.code).toBe(0);
    const b = parseBundle(readFileSync(out, 'utf8'));
    expect(b.tokens.length).toBe(3);
    expect(b.epochs.map((e) => e.keyEpoch)).toEqual([1]);
    expect(b.epochs[0]!.expires).toBeGreaterThan(Date.now() / 1000); // the default rotation: the epoch has an end
    expect(iss.stderr).toContain('linkable');
    // epoch 2 is already scheduled (the next one, requestable ahead), so revocation skips it
    const rot = await cli('user', 'rotate', '-c', cfgPath, BOB);
    expect(rot.stdout).toContain('key epoch now 3');
    expect((await cli('user', 'list', '-c', cfgPath)).stdout).toMatch(
      /bob@example\.org {2}tokens {2}key epoch 3 until \S+ \(next 4 scheduled\), rotation 90d, grace 7d/,
    );
    expect((await cli('queue', 'list', '-c', cfgPath)).stderr).toContain('queued 0');
    expect((await cli('run', '-c', cfgPath, '--check')).stdout).toContain('config ok');
  });
});

describe('gateway daemon', () => {
  let gw: Gateway;
  let client: PacketLink;
  beforeAll(async () => {
    gw = await Gateway.start({ config: loadGatewayConfig(cfgPath), logger: createLogger('gateway', 'silent'), defaultMetrics: false });
    // no authorities here: make this epoch's Sphinx key as the upload for it would have
    gw.hop.keys.ensure([epochAt(gw.config.epoch, gw.hop.now())]);
    client = await PacketLink.create({
      identity: new Uint8Array(32).fill(9),
      listen: [],
      packetSize: packetSizes(DEFAULT_GEOMETRY).packet,
      onFrame: () => {},
      isAllowedPeer: () => true,
      addressesOf: () => gw.hop.link.multiaddrs(),
    });
  });
  afterAll(async () => {
    await client?.stop();
    await gw?.close();
  });

  /** The epoch of the gateway's current key: the key phase of the packets built for it. */
  const nowEpoch = () => epochAt(gw.config.epoch, gw.hop.now());
  const route = () => [{ nodeId: gw.hop.identity.nodeId, publicKey: gw.hop.keyStore.sphinxKey(nowEpoch())!.publicKey, delayMs: 0 }];

  it('issues tokens over the authenticated endpoint, then takes a Sphinx packet to the MX; replays are dropped', async () => {
    const secret = gw.store.resetSecret(BOB);
    const user = await fetch(`http://127.0.0.1:${gw.issuancePort}/v1/user`, { headers: { authorization: `Bearer ${BOB}:${secret}` } }).then(
      (r) => r.json() as Promise<{ keyEpoch: number; issuerPublicKey: string }>,
    );
    expect(user.keyEpoch).toBe(3);
    const st = requestTokens(Buffer.from(user.issuerPublicKey, 'hex'), BOB, user.keyEpoch, 2);
    const res = await fetch(`http://127.0.0.1:${gw.issuancePort}/v1/issue`, {
      method: 'POST',
      headers: { authorization: `Bearer ${BOB}:${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ keyEpoch: user.keyEpoch, blinded: st.blinded.map((x) => Buffer.from(x).toString('hex')) }),
    }).then((r) => r.json() as Promise<{ evaluated: string[]; proof: string }>);
    const tokens = finalizeTokens(st, { evaluated: res.evaluated.map((h) => Buffer.from(h, 'hex')), proof: Buffer.from(res.proof, 'hex') });
    expect(verifyToken(gw.issuer, BOB, tokens[0]!)).toBe(true);
    expect(tokenCheckBackend()).toBe('libsodium'); // the started gateway redeems on libsodium
    const bad = await fetch(`http://127.0.0.1:${gw.issuancePort}/v1/user`, { headers: { authorization: `Bearer ${BOB}:${'x'.repeat(43)}` } });
    expect(bad.status).toBe(401);

    const body = Buffer.from('From: a@b.example\nTo: bob@example.org\nSubject: over the link\n\nhello\n');
    const [frag] = messageFragments(new Uint8Array(body), BOB, tokens[0]!);
    const { packet } = createPacket(nodeSuite, DEFAULT_GEOMETRY, {
      route: route(),
      keyEpoch: nowEpoch(),
      terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
      payload: encodeFragment(frag!, DEFAULT_GEOMETRY.payloadSize),
    });
    expect(client.send(gw.hop.link.peerId, packet)).toBe(true);
    expect(client.send(gw.hop.link.peerId, packet)).toBe(true); // a replay
    for (let i = 0; i < 100 && got.length < 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(got.length).toBe(1);
    expect(got[0]!.toString()).toBe(body.toString().replace(/\n/g, '\r\n'));
    for (let i = 0; i < 40 && gw.hop.engine.counters.dropped.replay < 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(gw.hop.engine.counters.dropped.replay).toBe(1);
    // the hop unwrap ran on the Sphinx worker pool ([crypto] workers: cores - 1, at least 1)
    expect(gw.hop.cryptoWorkers).toBeGreaterThanOrEqual(1);
    expect(gw.hop.poolStats!.frames + gw.hop.poolStats!.inlineFrames).toBeGreaterThanOrEqual(2);
    expect(gw.intake.counters.messagesCompleted).toBe(1);
    const m = await fetch(`http://127.0.0.1:${gw.hop.metricsPort}/metrics`).then((r) => r.text());
    expect(m).toMatch(/postmix_gateway_messages_completed_total 1/);
    expect(m).toMatch(/postmix_gateway_tokens_accepted_total 1/);
    expect(m).toMatch(/postmix_gateway_packets_dropped_total\{reason="replay"\} 1/); // no document yet: alive, not ready; the issuance endpoint is up
    expect((await fetch(`http://127.0.0.1:${gw.hop.metricsPort}/healthz`)).status).toBe(200);
    const notReady = await fetch(`http://127.0.0.1:${gw.hop.metricsPort}/readyz`);
    expect(notReady.status).toBe(503);
    const nr = (await notReady.json()) as { checks: Record<string, unknown> };
    expect(nr.checks).toMatchObject({ listening: true, issuance: true });
    expect(nr.checks.document).toMatch(/no verified network document for epoch/);
  });

  it('builds the ACK from the fragment SURB only after the commit (first hop unknown without a document: counted as unsent)', async () => {
    gw.store.setPolicy(BOB, 'open', 100);
    const { surb } = createSurb(nodeSuite, DEFAULT_GEOMETRY, {
      route: route(),
      keyEpoch: nowEpoch(),
      queueId: new Uint8Array(32).fill(6),
      surbId: new Uint8Array(16).fill(1),
    });
    const [frag] = messageFragments(new Uint8Array(Buffer.from('Subject: s\n\nx\n')), BOB, null, { surb });
    const { packet } = createPacket(nodeSuite, DEFAULT_GEOMETRY, {
      route: route(),
      keyEpoch: nowEpoch(),
      terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
      payload: encodeFragment(frag!, DEFAULT_GEOMETRY.payloadSize),
    });
    client.send(gw.hop.link.peerId, packet);
    const unsent = async () =>
      (await gw.metrics.registry.getSingleMetric('postmix_gateway_acks_unsent_total')!.get()).values.find((v) => v.labels.reason === 'unknown-first-hop')
        ?.value ?? 0;
    for (let i = 0; i < 100 && (await unsent()) < 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await unsent()).toBe(1);
    expect(gw.store.handoffOf(frag!.messageId)?.recipient).toBe(BOB);
  });

  it('sends the ACK through the SURB to its first hop, where the sender opens it', async () => {
    const e = epochAt(gw.config.epoch, gw.hop.now());
    const mixKey = generateSphinxKey(e);
    const frames: Uint8Array[] = [];
    const mix = await PacketLink.create({
      identity: new Uint8Array(32).fill(11),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      packetSize: packetSizes(DEFAULT_GEOMETRY).packet,
      onFrame: (f) => void frames.push(f),
      isAllowedPeer: () => true,
      allowUnknownInbound: true,
    });
    try {
      const mixNodeId = new Uint8Array(32).fill(0xab);
      const entry = {
        nodeId: mixNodeId,
        identityKey: new Uint8Array(32),
        peerId: mix.peerId.toString(),
        addresses: mix.multiaddrs().map((m) => m.toString().replace(/\/p2p\/[^/]+$/, '')),
        sphinxKey: mixKey.publicKey,
        sphinxKeysAhead: [],
        layer: 1,
      };
      // a stand-in for a verified document: only the fields the gateway reads
      const [validAfter, length] = [epochStart(gw.config.epoch, e), gw.config.epoch.length];
      const body = {
        epoch: e,
        validAfter,
        freshUntil: validAfter + length,
        validUntil: validAfter + length,
        epochLength: length,
        layers: [[entry]],
        gateways: [],
      };
      gw.hop.installDocument({ body: { ...body, geometry: DEFAULT_GEOMETRY } } as unknown as VerifiedDocument);
      const ready = await fetch(`http://127.0.0.1:${gw.hop.metricsPort}/readyz`);
      expect(await ready.json()).toEqual({ ready: true, checks: { listening: true, document: true, issuance: true } });
      const mailbox = new Uint8Array(32).fill(7);
      const { surb, keys } = createSurb(nodeSuite, DEFAULT_GEOMETRY, {
        route: [{ nodeId: mixNodeId, publicKey: mixKey.publicKey, delayMs: 0 }],
        keyEpoch: e,
        queueId: mailbox,
        surbId: new Uint8Array(16).fill(2),
      });
      const [frag] = messageFragments(new Uint8Array(Buffer.from('Subject: ack me\n\nx\n')), BOB, null, { surb });
      const { packet } = createPacket(nodeSuite, DEFAULT_GEOMETRY, {
        route: route(),
        keyEpoch: nowEpoch(),
        terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
        payload: encodeFragment(frag!, DEFAULT_GEOMETRY.payloadSize),
      });
      client.send(gw.hop.link.peerId, packet);
      for (let i = 0; i < 100 && frames.length < 1; i++) await new Promise((r) => setTimeout(r, 50));
      expect(frames.length).toBe(1);
      const r = processPacket(DEFAULT_GEOMETRY, prepareHopKey(nodeSuite, mixKey.secretKey), frames[0]!);
      expect(r.ok && r.kind).toBe('deliver');
      if (!r.ok || r.kind !== 'deliver') return;
      const opened = openSurbReply(nodeSuite, DEFAULT_GEOMETRY, keys, r.payload);
      expect(opened.ok).toBe(true);
      if (!opened.ok) return;
      const d = decodePayload(opened.payload);
      expect(d.ok && d.kind === 'ack' && d.ack.status).toBe(AckStatus.Queued);
      expect(d.ok && d.kind === 'ack' && Buffer.from(d.ack.messageId).equals(Buffer.from(frag!.messageId))).toBe(true);

      // a decoy (payload-stream cover) is answered the same way: a reply through its SURB, of the
      // same size, to the SURB's first hop, which its creator opens to the decoy's id
      const decoySurb = createSurb(nodeSuite, DEFAULT_GEOMETRY, {
        route: [{ nodeId: mixNodeId, publicKey: mixKey.publicKey, delayMs: 0 }],
        keyEpoch: e,
        queueId: mailbox,
        surbId: new Uint8Array(16).fill(3),
      });
      const id = new Uint8Array(16).fill(0x5d);
      const decoy = createPacket(nodeSuite, DEFAULT_GEOMETRY, {
        route: route(),
        keyEpoch: nowEpoch(),
        terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
        payload: encodeDecoy({ id, surb: decoySurb.surb }, DEFAULT_GEOMETRY.payloadSize),
      });
      const decoysBefore = gw.intake.counters.decoys;
      client.send(gw.hop.link.peerId, decoy.packet);
      for (let i = 0; i < 100 && frames.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      expect(frames.length).toBe(2);
      expect(frames[1]!.length).toBe(frames[0]!.length);
      expect(gw.intake.counters.decoys).toBe(decoysBefore + 1);
      const r2 = processPacket(DEFAULT_GEOMETRY, prepareHopKey(nodeSuite, mixKey.secretKey), frames[1]!);
      expect(r2.ok && r2.kind === 'deliver' && r2.surbId !== undefined).toBe(true);
      if (!r2.ok || r2.kind !== 'deliver') return;
      const opened2 = openSurbReply(nodeSuite, DEFAULT_GEOMETRY, decoySurb.keys, r2.payload);
      expect(opened2.ok && decodePayload(opened2.payload)).toEqual({ ok: true, kind: 'loop', loopId: id });
    } finally {
      await mix.stop();
    }
  });

  it('keeps a client mailbox item (a SURB reply) until the client subscribes; refuses a plain delivery to a mailbox', async () => {
    const mailbox = new Uint8Array(32).fill(5);
    // version 2's plain delivery (a loop in the clear): not a mailbox item any more
    const refusedBefore = gw.hop.engine.counters.dropped['not-deliverable'];
    const plain = createPacket(nodeSuite, DEFAULT_GEOMETRY, {
      route: route(),
      keyEpoch: nowEpoch(),
      terminal: { kind: 'deliver', queueId: mailbox },
      payload: new TextEncoder().encode('plain'),
    });
    client.send(gw.hop.link.peerId, plain.packet);
    for (let i = 0; i < 100 && gw.hop.engine.counters.dropped['not-deliverable'] <= refusedBefore; i++) await new Promise((r) => setTimeout(r, 50));
    expect(gw.hop.engine.counters.dropped['not-deliverable']).toBe(refusedBefore + 1);
    expect(gw.store.mailboxSize(mailbox)).toBe(0);
    // a loop as the client sends it: a reply through a SURB of its own, ending at this mailbox
    const payload = new TextEncoder().encode('loop-id-123456789');
    const { surb, keys } = createSurb(nodeSuite, DEFAULT_GEOMETRY, {
      route: route(),
      keyEpoch: nowEpoch(),
      queueId: mailbox,
      surbId: new Uint8Array(16).fill(8),
    });
    const reply = packetFromSurb(nodeSuite, DEFAULT_GEOMETRY, surb, payload);
    if (!reply.ok) throw new Error(reply.reason);
    client.send(gw.hop.link.peerId, reply.packet);
    for (let i = 0; i < 100 && gw.store.mailboxSize(mailbox) < 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(gw.store.mailboxSize(mailbox)).toBe(1);
    // a raw peer, so every frame the gateway writes is seen whatever its length
    const raw = await RawPeer.create();
    const stream = await raw.dialProtocol(gw.hop.link.multiaddrs(), MAILBOX_PROTOCOL);
    stream.send(lp.encode.single(encodeSubscribe(mailbox)).subarray());
    // the gateway writes one frame per tick: the waiting item first, then dummies; all one size
    const frames: Uint8Array[] = [];
    for await (const frame of lp.decode(stream, { maxDataLength: 64 * 1024 })) {
      frames.push(frame.subarray());
      if (frames.length === 3) break;
    }
    stream.abort(new Error('done'));
    await raw.stop();
    const [first, ...rest] = frames.map((f) => decodeItem(f));
    if (!first || first === 'dummy') throw new Error('the waiting item did not come first');
    expect(frames[0]![0]).toBe(1);
    expect(Buffer.from(first.surbId).equals(Buffer.alloc(16, 8))).toBe(true);
    const opened = openSurbReply(nodeSuite, DEFAULT_GEOMETRY, keys, first.payload);
    expect(opened.ok && Buffer.from(opened.payload.subarray(0, payload.length)).toString()).toBe('loop-id-123456789');
    expect(rest).toEqual(['dummy', 'dummy']);
    expect(new Set(frames.map((f) => f.length))).toEqual(new Set([mailboxItemSize(DEFAULT_GEOMETRY.payloadSize)]));
    expect(gw.store.mailboxSize(mailbox)).toBe(0);
  });
});
