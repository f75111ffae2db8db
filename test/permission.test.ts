/**
 * Delivery permission run by the recipient (issue 14), with real processes where it matters:
 * - a `postmix gateway run` process serves issuance over HTTP; `postmix client tokens request`
 *   and `export` processes blind, request, verify the proof against the issuer key of a signed
 *   network document and hand out one bundle per contact (no token in two bundles);
 * - the sender imports a bundle from a whole saved .eml (MIME built by nodemailer), and sees it;
 * - gateways that cheat (another issuer key, a proof under another key, an epoch out of the
 *   schedule it announced, an answer for another epoch) are refused with a clear message;
 * - a running gateway (over libp2p, on its own clock) admits both key epochs inside the grace
 *   window and refuses a token past its epoch's end + grace; the sender's client, holding only
 *   such tokens, refuses the recipient at SMTP submission with the reason, before sending.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './support/cli.ts';
import { freePort } from '../cli/testnet/ports.ts';
import { ClientConfigSchema } from '../client/config.ts';
import { runClient } from '../client/daemon.ts';
import { TestNetwork } from './support/in-process-mixnet.ts';
import { PermissionStore, permissionPath } from '../client/permission.ts';
import { Gateway } from '../gateway/daemon.ts';
import { loadGatewayConfig } from '../gateway/config.ts';
import { AckStatus, encodeFragment } from '../proto/fragment/index.ts';
import { MAIL_QUEUE_ID } from '../proto/mailbox/index.ts';
import { epochAt } from '../proto/pki/index.ts';
import { testDocumentBody } from './support/pki.ts';
import { createPacket, DEFAULT_GEOMETRY, nodeSuite, packetSizes } from '../proto/sphinx/index.ts';
import {
  BUNDLE_MEDIA_TYPE,
  deriveIssuerKeys,
  generateIssuerKeys,
  issueAnswerJson,
  issueTokens,
  makeBundle,
  parseBundle,
  userInfoJson,
  verifyToken,
  type IssuerKeys,
  type KeyEpochWindow,
} from '../proto/tokens/index.ts';
import { createLogger } from '../runtime/daemon.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { KeyStore } from '../runtime/pki/key-store.ts';
import { messageFragments } from './support/fragments.ts';
import { postmixProcess } from './support/processes.ts';
import { issuedTokens } from './support/tokens.ts';
import { clientConfigToml, signedDocument } from './support/signed-document.ts';

const ROOT = join(import.meta.dirname, '..');
const BOB = 'bob@example.org';
let tmp: string;
const children: ChildProcess[] = [];
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'postmix-permission-'));
});
afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  for (const f of cleanup.reverse()) await Promise.resolve(f()).catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
}, 30_000);

const postmix = (args: string[]) => postmixProcess(args, { cwd: tmp, timeoutMs: 60_000 });

function gatewayToml(dir: string, o: { issuancePort: number; mxPort?: number; tokens?: string }): string {
  KeyStore.create(join(dir, 'data', 'keys'), { force: false, epochs: [] });
  const file = join(dir, 'gateway.toml');
  writeFileSync(
    file,
    `[gateway]
data_dir = "data"
listen = "/ip4/127.0.0.1/tcp/0"
domains = ["example.org"]
log_level = "info"
tick_ms = 60000
[mx]
host = "127.0.0.1"
port = ${o.mxPort ?? 9}
starttls = "never"
[issuance]
port = ${o.issuancePort}
public_url = "http://127.0.0.1:${o.issuancePort}/"
${o.tokens ?? ''}
[metrics]
port = 0
[directory]
threshold = 1
timeout_ms = 200
epoch_length = 604800
[[directory.authorities]]
url = "http://127.0.0.1:9"
public_key = "${Buffer.alloc(32, 1).toString('base64')}"
`,
  );
  return file;
}

const tokenHexes = (file: string) => parseBundle(readFileSync(file, 'utf8')).tokens.map((t) => Buffer.from(t.input).toString('hex'));

describe('a recipient gives permission with only its client and its credentials (processes)', () => {
  let gwCfg: string;
  let gwDir: string;
  let issuer: IssuerKeys;
  let bobCfg: string;
  let url: string;

  beforeAll(async () => {
    gwDir = join(tmp, 'gw');
    mkdirSync(gwDir);
    const port = await freePort();
    url = `http://127.0.0.1:${port}/`;
    gwCfg = gatewayToml(gwDir, { issuancePort: port });
    const gw = spawn(process.execPath, [join(ROOT, 'bin/postmix.js'), 'gateway', 'run', '-c', gwCfg], { cwd: gwDir, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(gw);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`gateway did not start: ${out}`)), 60_000);
      gw.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('gateway listening')) {
          clearTimeout(t);
          resolve();
        }
      });
      gw.on('exit', (c) => reject(new Error(`gateway exited ${c}: ${out}`)));
    });
    const seed = readFileSync(join(gwDir, 'data', 'issuer.seed'), 'utf8').trim();
    issuer = deriveIssuerKeys(new Uint8Array(Buffer.from(seed, 'hex')));
    expect(out).toContain(Buffer.from(issuer.publicKey).toString('hex')); // what the gateway publishes
  }, 90_000);

  it('request, one bundle per contact (no token shared), the overview of who holds how many', async () => {
    const add = await postmix(['gateway', 'user', 'add', '-c', gwCfg, BOB]);
    expect(add.code).toBe(0);
    const secret = /secret: (\S+)/.exec(add.stdout)![1]!;
    const dir = join(tmp, 'bob');
    const doc = signedDocument({ domain: 'example.org', issuerKey: issuer.publicKey, url });
    bobCfg = join(tmp, 'bob.toml');
    writeFileSync(bobCfg, clientConfigToml({ dataDir: dir, documentPath: join(tmp, 'bob-document.bin'), doc, address: BOB, secret }));

    const req = await postmix(['client', 'tokens', 'request', '--count', '4', '-c', bobCfg]);
    expect(req.stderr).toBe('');
    expect(req.code).toBe(0);
    expect(req.stdout).toMatch(/first request: pinned issuer key [0-9a-f]{16}… and key epoch 1/);
    expect(req.stdout).toMatch(/4 token\(s\) of key epoch 1 \(\S+ – \S+\) issued by http:\/\/127\.0\.0\.1:\d+\/ .*4 held, not given to anyone yet/);

    const fa = join(tmp, 'for-carol.json');
    const fb = join(tmp, 'for-dave.json');
    const ea = await postmix(['client', 'tokens', 'export', '--for', 'Carol@Friends.test', '--count', '3', '--out', fa, '-c', bobCfg]);
    expect(ea.code).toBe(0);
    expect(ea.stderr).toMatch(/bundle for carol@friends\.test: 3 of key epoch 1 \(valid \S+ – \S+\), written to .*for-carol\.json/);
    const eb = await postmix(['client', 'tokens', 'export', '--for', 'dave@friends.test', '--count', '3', '--out', fb, '-c', bobCfg]);
    expect(eb.code).toBe(0);
    expect(eb.stderr).toMatch(/3 of key epoch 1 .*; 2 requested from your gateway/); // 1 was left, 2 more were requested

    const a = tokenHexes(fa);
    const b = tokenHexes(fb);
    expect(a).toHaveLength(3);
    expect(b).toHaveLength(3);
    expect(a.filter((x) => b.includes(x))).toEqual([]);
    // real tokens: they verify under the gateway's key, for bob, in the window the gateway gave
    const bundle = parseBundle(readFileSync(fa, 'utf8'));
    expect(bundle.tokens.every((t) => verifyToken(issuer, BOB, t))).toBe(true);
    expect(bundle.epochs[0]!.expires! - bundle.epochs[0]!.notBefore!).toBe(90 * 86_400); // the gateway's default rotation

    const ov = await postmix(['client', 'tokens', '-c', bobCfg]);
    expect(ov.stdout).toMatch(/carol@friends\.test +given 3 of key epoch 1; at most 3 left/);
    expect(ov.stdout).toMatch(/dave@friends\.test +given 3 of key epoch 1; at most 3 left/);
    expect(ov.stdout).toMatch(/cannot tell whose tokens it redeems/);
    // what the recipient's own store keeps of given tokens: digests, not the tokens
    const store = new PermissionStore(permissionPath(dir));
    expect(store.db.prepare('SELECT COUNT(*) AS n FROM own_tokens WHERE token IS NOT NULL').get()).toEqual({ n: 0 });
    store.close();
  }, 120_000);

  it('the contact imports the bundle from a saved .eml; an encrypted message or one without a bundle is refused with the reason', async () => {
    const carolCfg = join(tmp, 'carol.toml');
    writeFileSync(carolCfg, `data_dir = ${JSON.stringify(join(tmp, 'carol'))}\n[log]\nlevel = "warn"\n`);
    const bundle = readFileSync(join(tmp, 'for-carol.json'));
    const eml = await new MailComposer({
      from: BOB,
      to: 'carol@friends.test',
      subject: 'write to me anonymously',
      text: 'Import the attached file with: postmix client tokens import',
      attachments: [{ filename: 'postmix-tokens-bob@example.org.json', content: bundle, contentType: BUNDLE_MEDIA_TYPE }],
    })
      .compile()
      .build();
    const emlFile = join(tmp, 'from-bob.eml');
    writeFileSync(emlFile, eml);
    const im = await postmix(['client', 'tokens', 'import', emlFile, '-c', carolCfg]);
    expect(im.code).toBe(0);
    expect(im.stdout).toMatch(
      /imported 3 token\(s\) for bob@example\.org from attachment "postmix-tokens-bob@example\.org\.json" \(key epoch 1: 3 new, valid from \S+ until \S+\)/,
    );
    expect((await cli(['client', 'tokens', 'import', emlFile, '-c', carolCfg])).stdout).toMatch(/nothing new/);
    expect((await cli(['client', 'tokens', '-c', carolCfg])).stdout).toMatch(/bob@example\.org +3 usable until \d{4}-/);

    const enc = join(tmp, 'encrypted.eml');
    writeFileSync(
      enc,
      'From: bob@example.org\r\nTo: carol@friends.test\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b"\r\n\r\n' +
        '--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n--b--\r\n',
    );
    const e = await cli(['client', 'tokens', 'import', enc, '-c', carolCfg]);
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(/still encrypted: save it from your mail client after it decrypted it/);
    const plain = join(tmp, 'plain.eml');
    writeFileSync(plain, 'From: a@b.test\r\nSubject: hi\r\n\r\nno bundle here\r\n');
    expect((await cli(['client', 'tokens', 'import', plain, '-c', carolCfg])).stderr).toMatch(/no token bundle in this message \(it has no attachment\)/);
  }, 60_000);
});

/** A gateway that cheats in one way, with the issuer secret whose public key the document lists. */
function cheatingGateway(issuer: IssuerKeys, mode: 'other-key' | 'other-secret' | 'moved-epoch' | 'answer-epoch' | 'honest') {
  const now = Math.floor(Date.now() / 1000);
  const P = 30 * 86_400;
  let epochs: KeyEpochWindow[] = [
    { keyEpoch: 1, starts: now - 100, ends: now - 100 + P },
    { keyEpoch: 2, starts: now - 100 + P, ends: now - 100 + 2 * P },
  ];
  const other = generateIssuerKeys();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const send = (o: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(o));
      };
      const pk = mode === 'other-key' ? other.publicKey : issuer.publicKey;
      const info = {
        recipient: BOB,
        policy: 'tokens' as const,
        issuerPublicKey: pk,
        keyEpoch: epochs[0]!.keyEpoch,
        epochs,
        graceS: 86_400,
        maxPerRequest: 100,
      };
      if (req.url === '/v1/user') return send(userInfoJson(info));
      const b = JSON.parse(Buffer.concat(chunks).toString()) as { keyEpoch: number; blinded: string[] };
      const blinded = b.blinded.map((h) => new Uint8Array(Buffer.from(h, 'hex')));
      const keyEpoch = mode === 'answer-epoch' ? b.keyEpoch + 1 : b.keyEpoch;
      const r = issueTokens(mode === 'other-secret' ? other : issuer, BOB, keyEpoch, blinded);
      send(issueAnswerJson({ recipient: BOB, keyEpoch, issuerPublicKey: pk, evaluated: r.evaluated, proof: r.proof }));
    });
  });
  return {
    server,
    /** from now on, announce a fresh epoch 5 that overlaps the pinned epoch 1 (as if revoked, without the user knowing) */
    moveEpochs: () => (epochs = [{ keyEpoch: 5, starts: now, ends: now + P }]),
  };
}

describe('the client refuses a gateway that could tell batches apart', () => {
  const issuer = deriveIssuerKeys(new Uint8Array(32).fill(0x42));
  const setup = async (mode: Parameters<typeof cheatingGateway>[1]) => {
    const g = cheatingGateway(issuer, mode);
    await new Promise<void>((r) => g.server.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => g.server.close(() => r())));
    const url = `http://127.0.0.1:${(g.server.address() as { port: number }).port}/`;
    const dir = join(tmp, `cheat-${mode}`);
    const cfg = join(tmp, `cheat-${mode}.toml`);
    const doc = signedDocument({ domain: 'example.org', issuerKey: issuer.publicKey, url });
    writeFileSync(cfg, clientConfigToml({ dataDir: dir, documentPath: join(tmp, `cheat-${mode}.bin`), doc, address: BOB, secret: 'x'.repeat(43) }));
    return { g, cfg, dir };
  };
  const held = (dir: string) => {
    const s = new PermissionStore(permissionPath(dir));
    const n = (s.db.prepare('SELECT COUNT(*) AS n FROM own_tokens').get() as { n: number }).n;
    s.close();
    return n;
  };

  it('an endpoint naming another issuer key than the signed document (process)', async () => {
    const { cfg, dir } = await setup('other-key');
    const r = await postmix(['client', 'tokens', 'request', '--count', '2', '-c', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the issuance endpoint says its issuer key is [0-9a-f]{16}…, but the signed network document lists [0-9a-f]{16}… .*refused/);
    expect(held(dir)).toBe(0);
  }, 60_000);

  it('an evaluation under another key (the proof does not verify against the document key)', async () => {
    const { cfg, dir } = await setup('other-secret');
    const r = await cli(['client', 'tokens', 'request', '--count', '2', '-c', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refused: the gateway's proof does not verify.*issuer key of the signed network document/);
    expect(held(dir)).toBe(0);
  });

  it('an answer for another key epoch than asked', async () => {
    const { cfg, dir } = await setup('answer-epoch');
    const r = await cli(['client', 'tokens', 'request', '--count', '2', '-c', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/asked for key epoch 1, the gateway answered for 2 \(refused\)/);
    expect(held(dir)).toBe(0);
  });

  it('a new epoch overlapping the pinned one is refused unless the user accepts it (it knows it revoked)', async () => {
    const { g, cfg, dir } = await setup('honest');
    expect((await cli(['client', 'tokens', 'request', '--count', '2', '-c', cfg])).code).toBe(0);
    expect(held(dir)).toBe(2);
    g.moveEpochs();
    const r = await cli(['client', 'tokens', 'request', '--count', '2', '-c', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /announces key epoch 5 from \S+ while key epoch 2, which this client knows, runs until \S+\. Only a revocation does that.*--accept-epoch 5/,
    );
    expect(held(dir)).toBe(2);
    const ok = await cli(['client', 'tokens', 'request', '--count', '2', '--accept-epoch', '5', '-c', cfg]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/key epoch 5 replaces the earlier ones/);
    expect(held(dir)).toBe(2); // the two of epoch 1, never given, were dropped: they are revoked
  });
});

describe('key-epoch expiry at a running gateway and at the sender, before sending', () => {
  it('inside the grace window both epochs are admitted, after it only the new one; the sender holding only expired tokens is refused at RCPT', async () => {
    const dir = join(tmp, 'expiry');
    mkdirSync(dir);
    const ERIN = 'erin@example.org';
    const HOUR = 3600;
    // the gateway's clock starts two days in the past, so the window it gives erin's first epoch is over in real time
    let clock = Math.floor(Date.now() / 1000) - 2 * 86_400;
    const cfgFile = gatewayToml(dir, { issuancePort: 0 });
    const gw = await Gateway.start({ config: loadGatewayConfig(cfgFile), logger: createLogger('gateway', 'silent'), defaultMetrics: false, now: () => clock });
    cleanup.push(() => gw.close());
    gw.store.addUser(ERIN, { now: clock * 1000, rotationS: HOUR, graceS: 600 });
    const sched = gw.store.schedule(ERIN, clock);
    expect([sched.current.keyEpoch, sched.current.ends, sched.next?.keyEpoch]).toEqual([1, clock + HOUR, 2]);
    const old = issuedTokens(gw.issuer, ERIN, 1, 3);
    const [fresh] = issuedTokens(gw.issuer, ERIN, 2, 1);

    const link = await PacketLink.create({
      identity: new Uint8Array(32).fill(0x33),
      listen: [],
      packetSize: packetSizes(DEFAULT_GEOMETRY).packet,
      onFrame: () => undefined,
      isAllowedPeer: () => true,
      addressesOf: () => gw.hop.link.multiaddrs(),
    });
    cleanup.push(() => link.stop());
    const sendWith = async (token: (typeof old)[number]) => {
      const before = { ...gw.intake.counters, tokensRejected: { ...gw.intake.counters.tokensRejected } };
      const e = epochAt(gw.config.epoch, gw.hop.now());
      gw.hop.keys.ensure([e]); // without a directory, nothing uploads (and so makes) the epoch's key
      const [frag] = messageFragments(new Uint8Array(Buffer.from(`Subject: s\r\n\r\n${Math.random()}\r\n`)), ERIN, token);
      const { packet } = createPacket(nodeSuite, DEFAULT_GEOMETRY, {
        route: [{ nodeId: gw.hop.identity.nodeId, publicKey: gw.hop.keyStore.sphinxKey(e)!.publicKey, delayMs: 0 }],
        keyEpoch: e,
        terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
        payload: encodeFragment(frag!, DEFAULT_GEOMETRY.payloadSize),
      });
      expect(link.send(gw.hop.link.peerId, packet)).toBe(true);
      for (let i = 0; i < 200 && gw.intake.counters.fragmentsIn === before.fragmentsIn; i++) await new Promise((r) => setTimeout(r, 25));
      const c = gw.intake.counters;
      if (c.tokensRejected.expired > before.tokensRejected.expired) return AckStatus.TokenRefused;
      return c.messagesCompleted > before.messagesCompleted ? AckStatus.Queued : 'other';
    };
    clock += 10;
    expect(await sendWith(old[0]!)).toBe(AckStatus.Queued);
    expect(await sendWith(fresh!)).toBe(AckStatus.TokenRefused); // epoch 2 has not started
    clock += HOUR + 60; // epoch 2 current; epoch 1 in its grace
    expect(await sendWith(old[1]!)).toBe(AckStatus.Queued);
    clock += 600; // past epoch 1's grace
    expect(await sendWith(old[2]!)).toBe(AckStatus.TokenRefused);
    expect(gw.intake.counters.tokensRejected.expired).toBe(2);

    // the sender got old[2] (epoch 1, whose window ended two days ago in real time) in a bundle:
    // its client says so at submission, instead of sending and bouncing later
    const body = testDocumentBody([1], { gateways: 1 });
    const gateway = {
      domains: ['example.org'],
      issuerKeys: [{ keyEpoch: 0, publicKey: gw.issuer.publicKey }],
      keyDirectoryUrl: '',
      policy: 'token-required' as const,
    };
    const doc = { ...body, gateways: body.gateways.map((g) => ({ ...g, gateway })) };
    const smtpPort = await freePort();
    const ccfg = ClientConfigSchema.parse({
      data_dir: join(dir, 'sender'),
      smtp: { host: '127.0.0.1', port: smtpPort },
      bounce: { maildir: join(dir, 'sender', 'Maildir') },
    });
    const client = await runClient(ccfg, {
      log: pino({ level: 'silent' }),
      network: new TestNetwork(doc, { send: () => undefined }, new Uint8Array(32).fill(1)),
    });
    cleanup.push(() => client.stop());
    const window = { notBefore: sched.current.starts, expires: sched.current.ends };
    client.core.wallet.importBundle(JSON.stringify(makeBundle(ERIN, gw.issuer.publicKey, [old[2]!], () => window)));
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true });
    const err = await t
      .sendMail({ from: 'alice@sender.test', to: ERIN, raw: 'From: alice@sender.test\r\nTo: erin@example.org\r\nSubject: hi\r\n\r\nhi\r\n' })
      .catch((e: Error & { responseCode?: number }) => e);
    t.close();
    expect((err as { responseCode?: number }).responseCode).toBe(550);
    expect((err as Error).message).toMatch(
      /the 1 delivery token\(s\) held for erin@example\.org expired at \S+ \(the recipient's key epoch ended\); ask erin@example\.org for a new bundle/,
    );
    expect(client.core.outbox.activeMessages()).toEqual([]); // nothing stored, nothing sent
    const sc = join(dir, 'sender.toml');
    writeFileSync(sc, `data_dir = ${JSON.stringify(join(dir, 'sender'))}\n[log]\nlevel = "warn"\n`);
    expect((await cli(['client', 'tokens', '-c', sc])).stdout).toMatch(
      /warning: all 1 token\(s\) for erin@example\.org expired at \S+: mail to erin@example\.org is refused at submission/,
    );
  }, 90_000);
});
