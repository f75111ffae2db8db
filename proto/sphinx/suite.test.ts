import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hexToBytes, bytesToHex } from '@noble/hashes/utils.js';
import { nobleSuite } from './suite-noble.ts';
import { nodeSuite } from './suite-node.ts';
import { requireSodiumNative } from './suite-select.ts';
import { makeSodiumSuite } from './suite-sodium.ts';
import type { SphinxSuite } from './suite.ts';

// Known-answer tests from the RFCs that define each primitive, run against every suite, so the
// backends agree because each is right, not only with each other.
const sodiumSuite = makeSodiumSuite(requireSodiumNative());
const suites = [sodiumSuite, nodeSuite, nobleSuite];

describe.each(suites)('primitive KATs: $name suite', (suite) => {
  it('X25519 matches RFC 7748 §6.1 (Alice and Bob)', () => {
    const a = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const b = hexToBytes('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    expect(bytesToHex(suite.publicKey(a))).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    const shared = suite.dh(suite.prepareScalar(a), suite.preparePoint(suite.publicKey(b)));
    expect(bytesToHex(shared!)).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
  });

  it('X25519 with a low-order point returns null, not a throw', () => {
    const a = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    expect(suite.dh(suite.prepareScalar(a), suite.preparePoint(new Uint8Array(32)))).toBeNull();
  });

  it('ChaCha20 keystream matches RFC 8439 §2.4.2 key, with the all-zero nonce and counter 0', () => {
    // RFC 8439 §A.1 test vector #2 is key=0..0, nonce=0, counter=1; test #1 is counter 0:
    const out = new Uint8Array(64);
    suite.stream(new Uint8Array(32), out);
    expect(bytesToHex(out)).toBe(
      '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586',
    );
  });

  it('HMAC-SHA256 matches RFC 4231 test case 2', () => {
    const mac = suite.hmac(new TextEncoder().encode('Jefe'), new TextEncoder().encode('what do ya want '), new TextEncoder().encode('for nothing?'));
    expect(bytesToHex(mac)).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('SHAKE256 matches the FIPS 202 empty-input value', () => {
    expect(bytesToHex(suite.kdf(new Uint8Array(0), new Uint8Array(0), 32))).toBe('46b9dd2b0ba88d13233b3feb743eeb243fcd52ea62b81b82b50c27646ed5762f');
  });

  it('xorStream and stream agree', () => {
    const key = new Uint8Array(32).fill(3);
    const data = new Uint8Array(300).fill(0);
    suite.xorStream(key, data);
    const ks = new Uint8Array(300);
    suite.stream(key, ks);
    expect(bytesToHex(data)).toBe(bytesToHex(ks));
  });
});

describe('the suites agree where the RFCs leave room for mistakes', () => {
  const pairs = [nodeSuite, nobleSuite].map((b) => [sodiumSuite.name, b.name, sodiumSuite, b] as const);
  const dhOf = (suite: SphinxSuite, k: Uint8Array, u: Uint8Array) => {
    const r = suite.dh(suite.prepareScalar(k), suite.preparePoint(u));
    return r && bytesToHex(r);
  };

  it.each(pairs)('X25519 on random scalars and u-coordinates, top bit set or not (%s vs %s)', (_a, _b, a, b) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (k, u) => {
        expect(dhOf(a, k, u)).toBe(dhOf(b, k, u));
        expect(bytesToHex(a.publicKey(k))).toBe(bytesToHex(b.publicKey(k)));
      }),
      { numRuns: b === nobleSuite ? 30 : 300 },
    );
  });

  // Low-order points (0, 1, the two points of order 8, and the non-canonical encodings p-1, p,
  // p+1), each also with the top bit set, which X25519 ignores: every suite returns null (the hop
  // drops bad-group-element). A non-canonical encoding of an ordinary point (p+9 = u 9) is
  // processed as its reduced value by all suites.
  const pLE = (low: number, top = 0x7f) => {
    const u = new Uint8Array(32).fill(0xff);
    u[0] = low;
    u[31] = top;
    return u;
  };
  const lowOrder = [
    new Uint8Array(32),
    Uint8Array.from([1, ...new Uint8Array(31)]),
    hexToBytes('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'),
    hexToBytes('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157'),
    pLE(0xec),
    pLE(0xed),
    pLE(0xee),
  ];
  const withTopBit = lowOrder.map((u) => {
    const v = u.slice();
    v[31]! |= 0x80;
    return v;
  });

  it.each([sodiumSuite, nodeSuite, nobleSuite])('low-order points give null on the $name suite, with the top bit set or not', (suite) => {
    const k = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    for (const u of [...lowOrder, ...withTopBit]) expect(dhOf(suite, k, u)).toBeNull();
    const nine = Uint8Array.from([9, ...new Uint8Array(31)]);
    expect(dhOf(suite, k, pLE(0xf6))).toBe(bytesToHex(suite.publicKey(k)));
    expect(dhOf(suite, k, nine)).toBe(bytesToHex(suite.publicKey(k)));
  });

  it.each(pairs)('ChaCha20, HMAC-SHA256 and SHAKE256 on any input agree (%s vs %s)', (_a, _b, a, b) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 3000 }), (key, data) => {
        const x = data.slice();
        const y = data.slice();
        a.xorStream(key, x);
        b.xorStream(key, y);
        expect(bytesToHex(x)).toBe(bytesToHex(y));
        expect(bytesToHex(a.hmac(key, data, key))).toBe(bytesToHex(b.hmac(key, data, key)));
        expect(bytesToHex(a.kdf(key, data, 256))).toBe(bytesToHex(b.kdf(key, data, 256)));
      }),
      { numRuns: 100 },
    );
  });
});
