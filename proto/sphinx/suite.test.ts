import { describe, expect, it } from 'vitest';
import { hexToBytes, bytesToHex } from '@noble/hashes/utils.js';
import { nobleSuite } from './suite-noble.ts';
import { nodeSuite } from './suite-node.ts';

// Known-answer tests from the RFCs that define each primitive, run against both suites, so the
// two backends agree because each is right, not only with each other.
const suites = [nodeSuite, nobleSuite];

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
