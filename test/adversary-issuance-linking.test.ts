/**
 * Adversary: the recipient's gateway (docs/spec/tokens.md, "What the gateway learns"). It must
 * learn that a valid token for bob arrived, and nothing about which of bob's contacts sent it;
 * in particular it must not link a redeemed token to the issuance request (and so to the bundle,
 * and so to the contact) that produced it.
 *
 * The attacker runs the real gateway code (store, issuance endpoint, intake) and sees more than
 * an honest one keeps: every byte of every issuance request and answer (a recording proxy in
 * front of the endpoint), its own database and WAL, and its issuer secret. Bob's real client
 * (client/issuance.ts) requests over HTTP and exports a bundle to carol and one to dave; carol
 * redeems a token. The attacker then:
 *   1. looks for the redeemed token's input or output, raw or hex, in its stored data and in
 *      the transcripts;
 *   2. recomputes, with its secret, what the issuance of that input would have looked like
 *      unblinded (the element HashToGroup(input) a client sends without blinding, and the
 *      evaluation (sk + m)^-1 · HashToGroup(input) it answers) and looks for either in the
 *      transcripts, which would tell it the batch.
 * Both must fail. A control client that does not blind (sends HashToGroup(input) itself) is
 * linked by the same attack, so the test fails if the client ever stopped blinding.
 */
import { ristretto255_hasher } from '@noble/curves/ed25519.js';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportFor, learnSchedule, type RequestOptions } from '../client/issuance.ts';
import { PermissionStore } from '../client/permission.ts';
import { startIssuanceServer, type IssuanceServer } from '../gateway/issuance.ts';
import { Intake } from '../gateway/intake.ts';
import { GatewayStore } from '../gateway/store.ts';
import { messageFragments } from './support/fragments.ts';
import { AckStatus } from '../proto/fragment/index.ts';
import {
  deriveIssuerKeys,
  encodeToken,
  issueRequestJson,
  issueTokens,
  noblePoprf,
  parseBundle,
  parseIssueAnswer,
  tokenInfo,
  type Token,
} from '../proto/tokens/index.ts';

const BOB = 'bob@example.org';
const DST = new TextEncoder().encode('HashToGroup-OPRFV1-\x02-ristretto255-SHA512');
const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');
const issuer = deriveIssuerKeys(new Uint8Array(32).fill(0x61));

let dir: string;
let store: GatewayStore;
let server: IssuanceServer;
let proxy: Server;
let proxyPort: number;
let secret: string;
/** every byte the endpoint received and sent, per connection */
const wire: Buffer[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-adv-link-'));
  store = new GatewayStore(join(dir, 'gateway', 'gateway.sqlite'));
  secret = store.addUser(BOB).secret;
  server = await startIssuanceServer(store, issuer, '127.0.0.1', 0);
  proxy = createServer((c) => {
    const up = connect(server.port, '127.0.0.1');
    c.on('data', (d) => (wire.push(Buffer.from(d)), up.write(d)));
    up.on('data', (d) => (wire.push(Buffer.from(d)), c.write(d)));
    c.on('end', () => up.end());
    up.on('end', () => c.end());
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  proxyPort = (proxy.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise<void>((r) => proxy.close(() => r()));
  await server.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What the gateway keeps on disk: every file of its data directory. */
function gatewayFiles(): Buffer[] {
  const d = join(dir, 'gateway');
  return readdirSync(d).map((f) => readFileSync(join(d, f)));
}

/** The attacker's linking rule: the batch (transcript index) an unblinded issuance of `t` would show up in, or -1. */
function link(t: Token, transcripts: readonly string[]): number {
  const h = ristretto255_hasher.hashToCurve(t.input, { DST }).toBytes();
  const n = issueTokens(issuer, BOB, t.keyEpoch, [h]).evaluated[0]!;
  return transcripts.findIndex((tr) => tr.includes(hex(h)) || tr.includes(hex(n)));
}

function redeem(intake: Intake, t: Token): AckStatus | string {
  const r = intake.handleFragment(messageFragments(new Uint8Array(Buffer.from('Subject: hi\r\n\r\nfrom a contact\r\n')), BOB, t)[0]!);
  return r.kind === 'ack' ? r.status : r.reason;
}

describe('the recipient gateway cannot link a redeemed token to its issuance', () => {
  it('blinded issuance through the real client: nothing stored or seen matches the redeemed token', async () => {
    const now = Date.now();
    const perm = new PermissionStore(join(dir, 'bob', 'permission.sqlite'));
    const o: RequestOptions = {
      store: perm,
      endpoint: { url: `http://127.0.0.1:${proxyPort}/`, address: BOB, secret, timeoutMs: 10_000 },
      gateway: { domain: 'example.org', issuerKey: issuer.publicKey, url: `http://127.0.0.1:${proxyPort}/` },
    };
    const sched = await learnSchedule(o);
    const transcripts: string[] = [];
    const bundles: Token[][] = [];
    for (const contact of ['carol@friends.test', 'dave@friends.test']) {
      const from = wire.length;
      const r = await exportFor(o, sched, contact, 4, 'current', () => undefined);
      transcripts.push(Buffer.concat(wire.slice(from)).toString('latin1'));
      bundles.push([...parseBundle(r.json).tokens]);
      expect(r.requested).toBe(4); // each contact's batch was its own request
    }
    perm.close();
    const everything = Buffer.concat(wire).toString('latin1');
    expect(everything).toContain('"blinded"'); // the transcripts are the real requests
    expect(everything).toContain('"evaluated"');

    const intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => now });
    const redeemed = bundles[0]![2]!; // one of carol's
    expect(redeem(intake, redeemed)).toBe(AckStatus.Queued);

    // 1. no input or output of any token, raw or hex, in the gateway's files or the transcripts
    const files = gatewayFiles();
    expect(files.length).toBeGreaterThan(0);
    for (const t of bundles.flat()) {
      for (const needle of [Buffer.from(t.input), Buffer.from(t.output), Buffer.from(encodeToken(t))]) {
        for (const f of files) {
          expect(f.includes(needle)).toBe(false);
          expect(f.includes(Buffer.from(needle.toString('hex')))).toBe(false);
        }
        expect(everything.includes(needle.toString('hex'))).toBe(false);
        expect(everything.includes(needle.toString('latin1'))).toBe(false);
      }
    }
    // 2. recomputing the unblinded issuance of each token finds no batch
    for (const t of bundles.flat()) expect(link(t, transcripts)).toBe(-1);
  });

  it('control: a client that does not blind is linked to its batch by the same attack', async () => {
    const now = Date.now();
    const inputs = [new Uint8Array(32).fill(1), new Uint8Array(32).fill(2)];
    const transcripts: string[] = [];
    const tokens: Token[] = [];
    for (const x of inputs) {
      // the broken client sends HashToGroup(input) unblinded (blind = 1)
      const h = ristretto255_hasher.hashToCurve(x, { DST }).toBytes();
      const from = wire.length;
      const res = await fetch(`http://127.0.0.1:${proxyPort}/v1/issue`, {
        method: 'POST',
        headers: { authorization: `Bearer ${BOB}:${secret}` },
        body: JSON.stringify(issueRequestJson({ keyEpoch: 1, blinded: [h] })),
      });
      expect(res.status).toBe(200);
      parseIssueAnswer(await res.json());
      transcripts.push(Buffer.concat(wire.slice(from)).toString('latin1'));
      // with blind = 1 its token is the plain POPRF output of the input
      tokens.push({ keyEpoch: 1, input: x, output: noblePoprf.evaluate(issuer.secretKey, x, tokenInfo(BOB, 1)) });
    }
    const intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => now });
    expect(redeem(intake, tokens[1]!)).toBe(AckStatus.Queued); // a valid token
    expect(link(tokens[1]!, transcripts)).toBe(1); // and linked to the second batch
    expect(link(tokens[0]!, transcripts)).toBe(0);
  });
});
