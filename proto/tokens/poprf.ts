/**
 * The one POPRF operation on the gateway's hot path: Evaluate (RFC 9497 §3.3.3, POPRF mode,
 * suite ristretto255-SHA512), which recomputes a token's output from its input to redeem it.
 * Two backends that must agree bit for bit (proto/tokens/poprf.test.ts: the RFC's vectors and
 * random inputs): @noble/curves, the pure-JS reference, and libsodium's ristretto255 (the
 * WebAssembly build in libsodium-wrappers-sumo; sodium-native does not bind ristretto255) with
 * SHA-512 from node:crypto.
 *
 *   Evaluate(skS, input, info):
 *     P = HashToGroup(input)                       // hash_to_ristretto255, expand_message_xmd
 *     m = HashToScalar("Info" || I2OSP(len(info), 2) || info)
 *     t = skS + m;  E = (1/t)·P
 *     output = SHA-512(I2OSP(len(input), 2) || input || I2OSP(len(info), 2) || info
 *                      || I2OSP(32, 2) || Serialize(E) || "Finalize")
 *
 * Issuance (BlindEvaluate with its DLEQ proof, Blind, Finalize) stays on noble: it runs once
 * per batch of tokens, not per message (proto/tokens/index.ts).
 *
 * Redemption lives here too, beside the backends it runs on: `verifyToken` (Evaluate, then a
 * constant-time compare with the token's output) on the backend this process chose with
 * `useFastestTokenChecks`, so a reader following a fragment's token check needs this file and
 * token.ts (the token's bytes), nothing else.
 */
import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { createHash } from 'node:crypto';
import { bytesEqual, fromHex, hex } from '../util/bytes.ts';
import { tokenInfo, type Token } from './token.ts';

export interface PoprfEvaluator {
  readonly name: string;
  /** The POPRF output (64 bytes). Throws for an invalid key, an over-long input or info. */
  evaluate(secretKey: Uint8Array, input: Uint8Array, info: Uint8Array): Uint8Array;
}

/** The reference: @noble/curves' RFC 9497 implementation. */
export const noblePoprf: PoprfEvaluator = {
  name: 'noble',
  evaluate: (secretKey, input, info) => ristretto255_oprf.poprf(info).evaluate(secretKey, input),
};

/** The libsodium functions the fast path uses, as libsodium-wrappers(-sumo) exposes them. */
export interface SodiumRistretto {
  crypto_core_ristretto255_from_hash(r: Uint8Array): Uint8Array;
  crypto_core_ristretto255_scalar_reduce(s: Uint8Array): Uint8Array;
  crypto_core_ristretto255_scalar_add(x: Uint8Array, y: Uint8Array): Uint8Array;
  /** Throws for the zero scalar. */
  crypto_core_ristretto255_scalar_invert(s: Uint8Array): Uint8Array;
  /** Throws when the result is the identity. */
  crypto_scalarmult_ristretto255(n: Uint8Array, p: Uint8Array): Uint8Array;
}

const ascii = (s: string) => new TextEncoder().encode(s);
const CONTEXT = ascii('OPRFV1-\x02-ristretto255-SHA512'); // mode 0x02 = POPRF
const prime = (dst: Uint8Array) => Uint8Array.of(...dst, dst.length); // DST || I2OSP(len(DST), 1)
const DST_GROUP = prime(Uint8Array.of(...ascii('HashToGroup-'), ...CONTEXT));
const DST_SCALAR = prime(Uint8Array.of(...ascii('HashToScalar-'), ...CONTEXT));
const Z_PAD = new Uint8Array(128); // SHA-512's block size
const LEN_64_AND_ZERO = Uint8Array.of(0, 64, 0); // I2OSP(64, 2) || I2OSP(0, 1)
const ONE = Uint8Array.of(1);
const INFO = ascii('Info');
const FINALIZE = ascii('Finalize');
const LEN_32 = Uint8Array.of(0, 32);

function u16(n: number, what: string): Uint8Array {
  if (n > 0xffff) throw new RangeError(`POPRF ${what} longer than 65535 bytes`);
  return Uint8Array.of(n >> 8, n & 0xff);
}

/**
 * expand_message_xmd (RFC 9380 §5.3.1) with SHA-512 for 64 output bytes: ell = 1, so b_1 is
 * the whole output. `dstPrime` already carries its length byte.
 */
function expandXmd64(msg: Uint8Array, dstPrime: Uint8Array): Uint8Array {
  const b0 = createHash('sha512').update(Z_PAD).update(msg).update(LEN_64_AND_ZERO).update(dstPrime).digest();
  return createHash('sha512').update(b0).update(ONE).update(dstPrime).digest();
}

function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

/**
 * How many (secret key, info) pairs keep their 1/t. A gateway redeems many tokens per recipient
 * and key epoch, and t = skS + HashToScalar(info) depends only on that pair: caching its inverse
 * saves the canonical-key check, HashToScalar and the scalar inversion (about a quarter of an
 * evaluation on libsodium). Bounded, oldest dropped first, so a flood of unknown recipients
 * costs a miss each, no memory.
 */
export const INVERSE_CACHE_SIZE = 1024;

export function makeSodiumPoprf(sodium: SodiumRistretto): PoprfEvaluator {
  /** A scalar's 32 bytes are canonical iff reducing them (zero-extended to 64) changes nothing. */
  const isCanonical = (s: Uint8Array) => {
    const wide = new Uint8Array(64);
    wide.set(s);
    return bytesEqual(sodium.crypto_core_ristretto255_scalar_reduce(wide), s);
  };
  // keyed by the key's and the info's bytes, not the key object: a key changed in place (or a
  // new key with the same info) is never answered with another key's inverse
  const inverses = new Map<string, Uint8Array>();
  const inverseOf = (secretKey: Uint8Array, framedInfo: Uint8Array): Uint8Array => {
    const k = hex(secretKey) + hex(framedInfo);
    const hit = inverses.get(k);
    if (hit) return hit;
    // noble refuses a key outside 0..L-1; libsodium would reduce it silently: refuse it too
    if (secretKey.length !== 32 || !isCanonical(secretKey)) throw new RangeError('POPRF secret key is not a canonical scalar');
    const m = sodium.crypto_core_ristretto255_scalar_reduce(expandXmd64(framedInfo, DST_SCALAR));
    const inv = sodium.crypto_core_ristretto255_scalar_invert(sodium.crypto_core_ristretto255_scalar_add(secretKey, m));
    if (inverses.size >= INVERSE_CACHE_SIZE) inverses.delete(inverses.keys().next().value!);
    inverses.set(k, inv);
    return inv;
  };
  return {
    name: 'libsodium',
    evaluate(secretKey, input, info) {
      const inputLen = u16(input.length, 'input');
      const infoLen = u16(info.length, 'info');
      const framedInfo = new Uint8Array(INFO.length + 2 + info.length);
      framedInfo.set(INFO, 0);
      framedInfo.set(infoLen, INFO.length);
      framedInfo.set(info, INFO.length + 2);
      const inv = inverseOf(secretKey, framedInfo);
      const P = sodium.crypto_core_ristretto255_from_hash(expandXmd64(input, DST_GROUP));
      if (isZero(P)) throw new Error('POPRF input maps to the identity');
      const E = sodium.crypto_scalarmult_ristretto255(inv, P);
      const out = createHash('sha512').update(inputLen).update(input).update(infoLen).update(info).update(LEN_32).update(E).update(FINALIZE).digest();
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    },
  };
}

/** Loads libsodium's WebAssembly build (tens of ms: done once, at gateway start). */
export async function loadSodiumRistretto(): Promise<SodiumRistretto> {
  const { default: sodium } = await import('libsodium-wrappers-sumo');
  await sodium.ready;
  return sodium;
}

export interface PoprfSelection {
  readonly evaluator: PoprfEvaluator;
  /** Set when libsodium could not be used: why (the gateway logs it as a warning). */
  readonly fallbackReason?: string;
}

/**
 * libsodium if it loads and reproduces the RFC's first POPRF vector, else noble (the speed of
 * before, never slower). `load` is injectable so tests can simulate a failure.
 */
export async function selectPoprf(load: () => Promise<SodiumRistretto> = loadSodiumRistretto): Promise<PoprfSelection> {
  try {
    const ev = makeSodiumPoprf(await load());
    // RFC 9497 A.1.3, POPRF test vector 1
    const out = ev.evaluate(fromHex('145c79c108538421ac164ecbe131942136d5570b16d8bf41a24d4337da981e07'), fromHex('00'), fromHex('7465737420696e666f'));
    const want = 'ca688351e88afb1d841fde4401c79efebb2eb75e7998fa9737bd5a82a152406d38bd29f680504e54fd4587eddcf2f37a2617ac2fbd2993f7bdf45442ace7d221';
    if (hex(out) !== want) throw new Error('RFC 9497 vector check failed');
    return { evaluator: ev };
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return { evaluator: noblePoprf, fallbackReason: `libsodium ristretto255 unusable (${why}); token checks run on noble` };
  }
}

// ---------------------------------------------------------------------------------------------
// redemption: the gateway's token check, on the backend this process selected

export interface IssuerKeys {
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

// Token checks start on noble and move to libsodium once a gateway asks (its WebAssembly takes
// tens of ms to load, which clients and the CLI, which never redeem tokens, need not pay).
let redeemWith: PoprfEvaluator = noblePoprf;
let selecting: Promise<PoprfSelection> | undefined;

/**
 * Moves this process's token checks to the fastest POPRF backend that loads (libsodium, else
 * noble with the reason); once per process. The gateway awaits it at start and logs the result.
 */
export function useFastestTokenChecks(): Promise<PoprfSelection> {
  selecting ??= selectPoprf().then((sel) => {
    redeemWith = sel.evaluator;
    return sel;
  });
  return selecting;
}

/** The backend verifyToken uses now ('noble' until useFastestTokenChecks has resolved). */
export function tokenCheckBackend(): string {
  return redeemWith.name;
}

/** Gateway: is `token` a valid token for `recipient` under its key epoch? Never throws. */
export function verifyToken(issuer: IssuerKeys, recipient: string, token: Token, evaluator: PoprfEvaluator = redeemWith): boolean {
  try {
    const expect = evaluator.evaluate(issuer.secretKey, token.input, tokenInfo(recipient, token.keyEpoch));
    return bytesEqual(expect, token.output);
  } catch {
    return false;
  }
}
