/**
 * Fuzz loop over every decoder that takes bytes from the network or from another party:
 * Sphinx packets, routing commands and SURBs; fragment/ACK/loop payloads; mailbox frames; link
 * frame streams; PKI descriptors, documents and votes; tokens and token bundles (also inside a
 * mail message); the issuance endpoint's JSON bodies, both ways. 100,000 inputs
 * in all (10,000 with --quick), random and mutated from valid seeds, round-robin over targets.
 *
 * A decoder may reject an input by its result (null, `ok: false`) or by throwing its own
 * documented error class (PkiError, BundleError, FramingError, IssuanceProtocolError): both are
 * counted per reason.
 * Anything else thrown is a bug: counted under THROW/… and the run exits non-zero.
 */
import crypto from 'node:crypto';
import { issuedTokens } from '../test/support/tokens.ts';
import { messageFragments } from '../test/support/fragments.ts';
import { decodePayload, encodeAck, encodeFragment, encodeLoop, AckStatus } from '../proto/fragment/index.ts';
import { encodeFrames, FrameDecoder, FramingError } from '../proto/link/index.ts';
import { decodeItem, decodeSubscribe, encodeItem } from '../proto/mailbox/index.ts';
import { testNode } from '../test/support/pki.ts';
import {
  decodeSignedDescriptor,
  decodeDescriptorBody,
  decodeSignedDocument,
  decodeDocumentBody,
  decodeSignedVote,
  decodeVoteBody,
  PkiError,
} from '../proto/pki/index.ts';
import {
  DEFAULT_GEOMETRY as G,
  createPacket,
  createSurb,
  decodeCommands,
  decodeSurbKeys,
  fastestSuite,
  packetFromSurb,
  packetSizes,
  prepareHopKey,
  processPacket,
} from '../proto/sphinx/index.ts';
import {
  BUNDLE_MEDIA_TYPE,
  BundleError,
  decodeToken,
  deriveIssuerKeys,
  encodeToken,
  issueAnswerJson,
  issueRequestJson,
  IssuanceProtocolError,
  issueTokens,
  makeBundle,
  parseBundle,
  parseIssueAnswer,
  parseIssueRequest,
  parseUserInfo,
  requestTokens,
  userInfoJson,
} from '../proto/tokens/index.ts';
import { bundlesIn } from '../client/bundle-mail.ts';
import { machineInfo, type BenchOptions, type BenchReport } from './harness.ts';

const rnd = (n: number) => new Uint8Array(crypto.randomBytes(n));
/** 1..16 random byte changes, sometimes a truncation or an extension. */
function mutate(seed: Uint8Array, i: number): Uint8Array {
  const p = seed.slice();
  for (let f = 0, n = 1 + (i % 16); f < n && p.length > 0; f++) p[crypto.randomInt(p.length)]! ^= 1 + crypto.randomInt(255);
  if (i % 7 === 0) return p.subarray(0, crypto.randomInt(p.length + 1));
  if (i % 11 === 0) return new Uint8Array([...p, ...rnd(crypto.randomInt(64))]);
  return p;
}

interface Target {
  readonly name: string;
  /** returns an outcome label; throws only an expected error class for a rejection */
  run(i: number): string | Promise<string>;
}

/** A random JSON value, nested up to `depth`. */
function randomJson(depth = 2): unknown {
  const k = crypto.randomInt(depth > 0 ? 8 : 6);
  if (k === 0) return null;
  if (k === 1) return crypto.randomInt(2) === 0;
  if (k === 2) return [0, -1, 1, 2 ** 32, 1.5, Number.MAX_SAFE_INTEGER + 2][crypto.randomInt(6)];
  if (k === 3) return crypto.randomBytes(crypto.randomInt(70)).toString('hex');
  if (k === 4) return crypto.randomBytes(crypto.randomInt(20)).toString('utf8');
  if (k === 5) return crypto.randomInt(1e9);
  if (k === 6) return Array.from({ length: crypto.randomInt(4) }, () => randomJson(depth - 1));
  return Object.fromEntries(Array.from({ length: crypto.randomInt(4) }, (_, j) => [`k${j}`, randomJson(depth - 1)]));
}

/** A JSON object with 1..3 fields (nested ones too) replaced, deleted or added. */
function mutateJson(seed: unknown): unknown {
  const o = structuredClone(seed) as Record<string, unknown>;
  for (let n = 1 + crypto.randomInt(3); n > 0; n--) {
    let at: Record<string, unknown> = o;
    const deep = Object.entries(at).filter(([, v]) => v && typeof v === 'object');
    if (deep.length > 0 && crypto.randomInt(2) === 0) at = deep[crypto.randomInt(deep.length)]![1] as Record<string, unknown>;
    const keys = Object.keys(at);
    const key = keys.length > 0 && crypto.randomInt(4) > 0 ? keys[crypto.randomInt(keys.length)]! : `extra${n}`;
    if (crypto.randomInt(5) === 0) delete at[key];
    else at[key] = randomJson();
  }
  return o;
}

function targets(): Target[] {
  const sizes = packetSizes(G);
  const ns = Array.from({ length: 3 }, () => {
    const sk = rnd(32);
    return { id: rnd(32), sk, pk: fastestSuite.publicKey(sk) };
  });
  const route = ns.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 3 }));
  const valid = createPacket(fastestSuite, G, { route, terminal: { kind: 'deliver', queueId: new Uint8Array(32) }, payload: new Uint8Array(100) }).packet;
  const { surb } = createSurb(fastestSuite, G, { route, queueId: new Uint8Array(32), surbId: new Uint8Array(16) });
  const key = prepareHopKey(fastestSuite, ns[0]!.sk);

  const issuer = deriveIssuerKeys(new Uint8Array(32).fill(7));
  const tokens = issuedTokens(issuer, 'bob@example.org', 1, 2);
  const fragment = encodeFragment(messageFragments(rnd(5000), 'bob@example.org', tokens[0]!, { surb: surb })[1]!, G.payloadSize);
  const payloadSeeds = [fragment, encodeAck({ messageId: rnd(16), index: 3, status: AckStatus.Queued }), encodeLoop(rnd(16))];
  const itemSeed = encodeItem({ surbId: rnd(16), payload: rnd(16 + G.payloadSize) }, G.payloadSize);
  const gw = testNode(100, 1, 'gateway');
  const mix = testNode(100, 2, 'mix', { layerPreference: 1 });
  const bundle = JSON.stringify(makeBundle('bob@example.org', issuer.publicKey, tokens, (e) => ({ notBefore: e * 100, expires: e * 100 + 50 })));
  const tokenSeed = encodeToken(tokens[1]!);
  const now = 1_800_000_000;
  const userSeed = userInfoJson({
    recipient: 'bob@example.org',
    policy: 'tokens',
    issuerPublicKey: issuer.publicKey,
    keyEpoch: 3,
    epochs: [
      { keyEpoch: 3, starts: now, ends: now + 100 },
      { keyEpoch: 4, starts: now + 100, ends: now + 200 },
    ],
    graceS: 10,
    maxPerRequest: 100,
  });
  const st = requestTokens(issuer.publicKey, 'bob@example.org', 3, 2);
  const requestSeed = issueRequestJson({ keyEpoch: 3, blinded: st.blinded });
  const ev = issueTokens(issuer, 'bob@example.org', 3, st.blinded);
  const answerSeed = issueAnswerJson({ recipient: 'bob@example.org', keyEpoch: 3, issuerPublicKey: issuer.publicKey, ...ev });
  const mailSeed = Buffer.from(
    'From: bob@example.org\r\nTo: carol@example.net\r\nSubject: tokens\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
      '--b\r\nContent-Type: text/plain\r\n\r\nhere\r\n--b\r\n' +
      `Content-Type: ${BUNDLE_MEDIA_TYPE}\r\nContent-Disposition: attachment; filename="t.json"\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
      Buffer.from(bundle)
        .toString('base64')
        .replace(/(.{76})/g, '$1\r\n') +
      '\r\n--b--\r\n',
  );

  const pkiDecoders: [string, (b: Uint8Array) => unknown][] = [
    ['signed-descriptor', decodeSignedDescriptor],
    ['descriptor-body', decodeDescriptorBody],
    ['signed-document', decodeSignedDocument],
    ['document-body', decodeDocumentBody],
    ['signed-vote', decodeSignedVote],
    ['vote-body', decodeVoteBody],
  ];
  const descBodies = [gw.descriptor, mix.descriptor].map((d) => decodeSignedDescriptor(d).body);

  return [
    {
      name: 'packet/random',
      run: () => {
        const r = processPacket(G, key, rnd(sizes.packet));
        return r.ok ? r.kind : r.reason;
      },
    },
    {
      name: 'packet/mutated',
      run: (i) => {
        const r = processPacket(G, key, mutate(valid, i));
        return r.ok ? r.kind : r.reason;
      },
    },
    { name: 'commands', run: () => decodeCommands(rnd(G.perHopSize))?.action ?? 'invalid' },
    {
      name: 'surb',
      run: (i) => {
        const r1 = packetFromSurb(fastestSuite, G, mutate(surb, i), new Uint8Array(10));
        const r2 = decodeSurbKeys(rnd(crypto.randomInt(700)));
        return `${r1.ok ? 'wrapped' : r1.reason}/${r2 ? 'keys' : 'no-keys'}`;
      },
    },
    {
      name: 'fragment-payload',
      run: (i) => {
        const d = decodePayload(i % 2 ? rnd(crypto.randomInt(G.payloadSize + 1)) : mutate(payloadSeeds[i % 3]!, i));
        return d.ok ? `ok-${d.kind}` : `rejected-${d.reason}`;
      },
    },
    {
      name: 'mailbox',
      run: (i) => {
        const a = decodeItem(i % 2 ? rnd(crypto.randomInt(2200)) : mutate(itemSeed, i));
        const b = decodeSubscribe(rnd(crypto.randomInt(40)));
        return `${a === 'dummy' ? 'dummy' : a ? 'item' : 'no-item'}/${b ? 'subscribe' : 'no-subscribe'}`;
      },
    },
    {
      name: 'link-frames',
      run: (i) => {
        // a stream of frames of mixed lengths (or pure noise), cut into random chunks
        const bytes =
          i % 3 === 0
            ? rnd(crypto.randomInt(3 * sizes.packet))
            : encodeFrames(Array.from({ length: 1 + (i % 4) }, () => rnd(i % 2 ? sizes.packet : crypto.randomInt(3000))));
        let frames = 0;
        let wrong = 0;
        const d = new FrameDecoder(sizes.packet, { frame: () => frames++, wrongSize: () => wrong++ });
        for (let at = 0; at < bytes.length;) {
          const n = 1 + crypto.randomInt(4096);
          d.push(bytes.subarray(at, at + n));
          at += n;
        }
        return `${frames > 0 ? 'frames' : 'no-frames'}/${wrong > 0 ? 'wrong-size' : 'sizes-ok'}/${d.idle ? 'idle' : 'partial'}`;
      },
    },
    {
      name: 'pki',
      run: (i) => {
        const [label, decode] = pkiDecoders[i % pkiDecoders.length]!;
        const seed = label.includes('descriptor') ? (label.startsWith('signed') ? [gw.descriptor, mix.descriptor][i % 2]! : descBodies[i % 2]!) : undefined;
        decode(seed && i % 2 ? mutate(seed, i) : rnd(crypto.randomInt(800)));
        return `${label}/decoded`;
      },
    },
    {
      name: 'tokens',
      run: (i) => {
        if (i % 2 === 0) return decodeToken(i % 4 ? mutate(tokenSeed, i) : rnd(crypto.randomInt(120))) ? 'token' : 'no-token';
        const s =
          i % 4 === 1
            ? bundle.slice(0, crypto.randomInt(bundle.length)) + crypto.randomBytes(crypto.randomInt(8)).toString('latin1')
            : crypto.randomBytes(crypto.randomInt(200)).toString('utf8');
        parseBundle(s);
        return 'bundle-parsed';
      },
    },
    {
      // what the gateway's issuance endpoint and the recipient's client take from each other
      name: 'issuance-json',
      run: (i) => {
        const which = i % 3;
        const seed = [userSeed, requestSeed, answerSeed][which]!;
        const j = i % 9 < 3 ? randomJson(3) : mutateJson(seed);
        if (which === 0) return (parseUserInfo(j), 'user-parsed');
        if (which === 1) return parseIssueRequest(j, 100).ok ? 'request-parsed' : 'request-refused';
        return (parseIssueAnswer(j), 'answer-parsed');
      },
    },
    {
      // a saved message that may carry a bundle (client tokens import)
      name: 'bundle-mail',
      run: async (i) => {
        const input = i % 4 === 0 ? rnd(crypto.randomInt(600)) : mutate(new Uint8Array(mailSeed), i);
        return `found-${(await bundlesIn(Buffer.from(input))).length}`;
      },
    },
  ];
}

const EXPECTED: readonly (abstract new (...a: never[]) => Error)[] = [PkiError, BundleError, FramingError, IssuanceProtocolError];

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const total = opts.quick ? 10_000 : 100_000;
  const ts = targets();
  const outcomes: Record<string, number> = {};
  const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);
  let throws = 0;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const t = ts[i % ts.length]!;
    const round = Math.floor(i / ts.length);
    try {
      const r = t.run(round);
      count(`${t.name}/${typeof r === 'string' ? r : await r}`);
    } catch (e) {
      const err = e as Error;
      if (EXPECTED.some((C) => err instanceof C)) count(`${t.name}/rejected-${err.name}`);
      else {
        throws++;
        count(`THROW/${t.name}/${err.name}: ${err.message}`);
      }
    }
    if ((i + 1) % 20_000 === 0) opts.log(`  fuzz: ${i + 1}/${total} inputs`);
  }
  const wall = (performance.now() - start) / 1000;
  opts.log(`fuzz: ${total} inputs over ${ts.length} decoder families in ${wall.toFixed(1)} s, ${throws} unexpected throws`);
  for (const [k, v] of Object.entries(outcomes).sort()) opts.log(`  ${k}: ${v}`);
  if (throws > 0) process.exitCode = 1;
  return {
    suite: 'fuzz',
    machine: machineInfo(),
    results: { inputs: total, targets: ts.map((t) => t.name), unexpected_throws: throws, wall_s: wall, outcomes },
  };
}
