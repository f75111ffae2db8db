import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BundleError,
  TokenProofError,
  decodeToken,
  deriveIssuerKeys,
  encodeToken,
  finalizeTokens,
  generateIssuerKeys,
  issueTokens,
  makeBundle,
  parseBundle,
  requestTokens,
  tokenSpendKey,
  verifyToken,
} from './index.ts';

const issuer = deriveIssuerKeys(new Uint8Array(32).fill(7));

describe('delivery tokens (RFC 9497 POPRF)', () => {
  const state = requestTokens(issuer.publicKey, 'Bob@Example.org', 3, 4);
  const tokens = finalizeTokens(state, issueTokens(issuer, 'bob@example.org', 3, state.blinded));

  it('issued tokens verify for their recipient and key epoch only', () => {
    expect(tokens.length).toBe(4);
    for (const t of tokens) {
      expect(verifyToken(issuer, 'bob@example.org', t)).toBe(true);
      expect(verifyToken(issuer, 'BOB@example.org', t)).toBe(true); // addresses compare case-insensitively
      expect(verifyToken(issuer, 'carol@example.org', t)).toBe(false);
      expect(verifyToken(issuer, 'bob@example.org', { ...t, keyEpoch: 4 })).toBe(false);
      expect(verifyToken(generateIssuerKeys(), 'bob@example.org', t)).toBe(false);
    }
    expect(new Set(tokens.map(tokenSpendKey)).size).toBe(4);
  });

  it('a forged token (any changed bit) does not verify', () => {
    const enc = encodeToken(tokens[0]!);
    fc.assert(
      fc.property(fc.nat(enc.length * 8 - 1), (bit) => {
        const b = enc.slice();
        b[bit >> 3]! ^= 1 << (bit & 7);
        const t = decodeToken(b)!;
        expect(verifyToken(issuer, 'bob@example.org', t)).toBe(false);
      }),
      { numRuns: 40 },
    );
  });

  it('the client rejects an evaluation made with another key or for another recipient', () => {
    const st = requestTokens(issuer.publicKey, 'bob@example.org', 3, 2);
    expect(() => finalizeTokens(st, issueTokens(generateIssuerKeys(), 'bob@example.org', 3, st.blinded))).toThrow(TokenProofError);
    expect(() => finalizeTokens(st, issueTokens(issuer, 'mallory@example.org', 3, st.blinded))).toThrow(TokenProofError);
  });

  it('bundles round-trip and untrusted bundles fail with a reason', () => {
    const b = JSON.stringify(makeBundle('bob@example.org', issuer.publicKey, tokens));
    const p = parseBundle(b);
    expect(p.recipient).toBe('bob@example.org');
    expect(p.tokens.map((t) => encodeToken(t))).toEqual(tokens.map((t) => encodeToken(t)));
    expect(p.epochs).toEqual([{ keyEpoch: 3, notBefore: null, expires: null, tokens: p.tokens }]);
    const j = JSON.parse(b);
    const group = j.epochs[0];
    for (const bad of [
      '',
      '{',
      '[]',
      '{"v":3}',
      '{"v":2}',
      JSON.stringify({ ...j, epochs: [{ ...group, tokens: ['00'] }] }),
      JSON.stringify({ ...j, epochs: [{ ...group, keyEpoch: 4 }] }), // tokens of epoch 3 under epoch 4
      JSON.stringify({ ...j, epochs: [group, group] }),
      JSON.stringify({ ...j, epochs: [{ ...group, notBefore: 200, expires: 100 }] }),
      JSON.stringify({ ...j, epochs: [{ ...group, expires: -1 }] }),
      JSON.stringify({ ...j, recipient: 'x' }),
    ])
      expect(() => parseBundle(bad)).toThrow(BundleError);
    // validity windows ride along, per epoch; version 1 (one epoch, no window) is still read
    const windowed = parseBundle(
      JSON.stringify(makeBundle('bob@example.org', issuer.publicKey, tokens, (e) => ({ notBefore: e * 100, expires: e * 100 + 50 }))),
    );
    expect(windowed.epochs.map((e) => [e.keyEpoch, e.notBefore, e.expires, e.tokens.length])).toEqual([[3, 300, 350, 4]]);
    const v1 = { v: 1, recipient: 'bob@example.org', keyEpoch: 3, issuerPublicKey: j.issuerPublicKey, tokens: group.tokens };
    expect(parseBundle(JSON.stringify(v1)).epochs.map((e) => [e.keyEpoch, e.notBefore, e.expires, e.tokens.length])).toEqual([[3, null, null, 4]]);
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        try {
          parseBundle(s);
        } catch (e) {
          expect(e).toBeInstanceOf(BundleError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('decodeToken rejects wrong lengths', () => {
    expect(decodeToken(new Uint8Array(99))).toBeNull();
    expect(decodeToken(new Uint8Array(101))).toBeNull();
  });
});
