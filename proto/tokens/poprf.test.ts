import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { deriveIssuerKeys, finalizeTokens, issueTokens, requestTokens, tokenCheckBackend, useFastestTokenChecks, verifyToken } from './index.ts';
import { INVERSE_CACHE_SIZE, loadSodiumRistretto, makeSodiumPoprf, noblePoprf, selectPoprf, type SodiumRistretto } from './poprf.ts';

interface Rfc9497Vectors {
  Seed: string;
  KeyInfo: string;
  skSm: string;
  pkSm: string;
  vectors: {
    name: string;
    Input: string[];
    Info: string;
    Blind: string[];
    BlindedElement: string[];
    EvaluationElement: string[];
    Proof: string;
    Output: string[];
  }[];
}
const file = new URL('../../docs/spec/vectors/rfc9497-poprf-ristretto255-sha512.json', import.meta.url);
const rfc = JSON.parse(readFileSync(file, 'utf8')) as Rfc9497Vectors;
const b = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));
const h = (u: Uint8Array) => Buffer.from(u).toString('hex');

const sodium = await loadSodiumRistretto();
const sodiumPoprf = makeSodiumPoprf(sodium);

describe.each([sodiumPoprf, noblePoprf])('RFC 9497 POPRF ristretto255-SHA512 vectors: Evaluate on $name', (ev) => {
  it.each(rfc.vectors.map((v) => [v.name, v] as const))('%s', (_n, v) => {
    v.Input.forEach((input, i) => expect(h(ev.evaluate(b(rfc.skSm), b(input), b(v.Info)))).toBe(v.Output[i]));
  });
});

describe('RFC 9497 vectors: the issuance path (noble) that mints the tokens', () => {
  it('DeriveKeyPair gives skSm and pkSm', () => {
    const k = ristretto255_oprf.poprf(b(rfc.vectors[0]!.Info)).deriveKeyPair(b(rfc.Seed), b(rfc.KeyInfo));
    expect([h(k.secretKey), h(k.publicKey)]).toEqual([rfc.skSm, rfc.pkSm]);
  });

  it.each(rfc.vectors.map((v) => [v.name, v] as const))(
    '%s: BlindEvaluate gives the evaluated elements; Finalize checks the proof and gives the outputs',
    (_n, v) => {
      const p = ristretto255_oprf.poprf(b(v.Info));
      expect(p.blindEvaluateBatch(b(rfc.skSm), v.BlindedElement.map(b)).evaluated.map(h)).toEqual(v.EvaluationElement);
      const { tweakedKey } = p.blind(b(v.Input[0]!), b(rfc.pkSm));
      const items = v.Input.map((input, i) => ({
        input: b(input),
        blind: b(v.Blind[i]!),
        evaluated: b(v.EvaluationElement[i]!),
        blinded: b(v.BlindedElement[i]!),
      }));
      expect(p.finalizeBatch(items, b(v.Proof), tweakedKey).map(h)).toEqual(v.Output);
      const badProof = b(v.Proof);
      badProof[0]! ^= 1;
      expect(() => p.finalizeBatch(items, badProof, tweakedKey)).toThrow();
    },
  );
});

describe('libsodium and noble agree', () => {
  const sk = fc.uint8Array({ minLength: 64, maxLength: 64 }).map((w) => sodium.crypto_core_ristretto255_scalar_reduce(w));
  it('on random keys, inputs and infos', () => {
    fc.assert(
      fc.property(sk, fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), (k, input, info) => {
        expect(h(sodiumPoprf.evaluate(k, input, info))).toBe(h(noblePoprf.evaluate(k, input, info)));
      }),
      { numRuns: 60 },
    );
  });

  it('both refuse a key that is not a canonical scalar (>= the group order)', () => {
    const order = b('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010'); // L, little-endian
    for (const k of [order, new Uint8Array(32).fill(0xff)]) {
      expect(() => noblePoprf.evaluate(k, new Uint8Array(32), new Uint8Array(3))).toThrow();
      expect(() => sodiumPoprf.evaluate(k, new Uint8Array(32), new Uint8Array(3))).toThrow(RangeError);
    }
  });
});

describe("libsodium's cache of 1/(skS + m) per key and info", () => {
  const key = (n: number) => sodium.crypto_core_ristretto255_scalar_reduce(new Uint8Array(64).fill(n));
  it('answers repeated infos, many inputs each, exactly as noble does', () => {
    const ev = makeSodiumPoprf(sodium);
    const k = key(3);
    for (let round = 0; round < 3; round++)
      for (const info of [b('01'), b('0102'), new Uint8Array(0)])
        for (let i = 0; i < 4; i++) {
          const input = Uint8Array.of(round, i);
          expect(h(ev.evaluate(k, input, info))).toBe(h(noblePoprf.evaluate(k, input, info)));
        }
  });

  it('never answers with another key: not for a second key with the same info, nor for a key changed in place', () => {
    const ev = makeSodiumPoprf(sodium);
    const info = b('7465737420696e666f');
    const k1 = key(5);
    const input = b('00');
    expect(h(ev.evaluate(k1, input, info))).toBe(h(noblePoprf.evaluate(k1, input, info)));
    const k2 = key(6);
    expect(h(ev.evaluate(k2, input, info))).toBe(h(noblePoprf.evaluate(k2, input, info)));
    k1.set(key(9));
    expect(h(ev.evaluate(k1, input, info))).toBe(h(noblePoprf.evaluate(k1, input, info)));
  });

  it('stays right past its bound, and still refuses a non-canonical key it has never seen', () => {
    const ev = makeSodiumPoprf(sodium);
    const k = key(11);
    const first = b('aa');
    const want = h(noblePoprf.evaluate(k, first, first));
    expect(h(ev.evaluate(k, first, first))).toBe(want);
    for (let i = 0; i < INVERSE_CACHE_SIZE + 10; i++) ev.evaluate(k, first, Uint8Array.of(i >> 8, i & 0xff, 0xee));
    expect(h(ev.evaluate(k, first, first))).toBe(want); // dropped from the cache, computed again
    expect(() => ev.evaluate(new Uint8Array(32).fill(0xff), first, first)).toThrow(RangeError);
  });
});

describe('backend selection', () => {
  it('libsodium loads here and passes its start-up vector check', async () => {
    const sel = await selectPoprf();
    expect(sel.evaluator.name).toBe('libsodium');
    expect(sel.fallbackReason).toBeUndefined();
  });

  it('falls back to noble, with the reason, when libsodium does not load or computes wrong results', async () => {
    const failed = await selectPoprf(() => Promise.reject(new Error("Cannot find package 'libsodium-wrappers-sumo'")));
    expect(failed.evaluator).toBe(noblePoprf);
    expect(failed.fallbackReason).toMatch(/Cannot find package/);
    const wrong: SodiumRistretto = { ...sodium, crypto_scalarmult_ristretto255: (_n, p) => p };
    const broken = await selectPoprf(() => Promise.resolve(wrong));
    expect(broken.evaluator).toBe(noblePoprf);
    expect(broken.fallbackReason).toMatch(/vector check failed/);
  });

  it('verifyToken runs on libsodium once a process asks, and accepts and refuses what noble does', async () => {
    const issuer = deriveIssuerKeys(new Uint8Array(32).fill(7));
    const st = requestTokens(issuer.publicKey, 'bob@example.org', 2, 3);
    const tokens = finalizeTokens(st, issueTokens(issuer, 'bob@example.org', 2, st.blinded));
    expect((await useFastestTokenChecks()).evaluator.name).toBe('libsodium');
    expect(tokenCheckBackend()).toBe('libsodium');
    for (const t of tokens) {
      const forged = { ...t, output: t.output.map((x, i) => (i === 5 ? x ^ 1 : x)) };
      for (const [recipient, tok] of [
        ['bob@example.org', t],
        ['carol@example.org', t],
        ['bob@example.org', { ...t, keyEpoch: 3 }],
        ['bob@example.org', forged],
      ] as const) {
        const want = verifyToken(issuer, recipient, tok, noblePoprf);
        expect(verifyToken(issuer, recipient, tok)).toBe(want);
        expect(want).toBe(recipient === 'bob@example.org' && tok === t);
      }
    }
  });
});
