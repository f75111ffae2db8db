/**
 * Delivery-permission tokens (docs/spec/tokens.md): anonymous, single-use, bound to one
 * recipient and one key epoch of that recipient, from a POPRF (RFC 9497, ristretto255-SHA512,
 * partially-oblivious mode) with info = "postmix-token-v1" || u32 key epoch || recipient.
 *
 * Issuance: the recipient's client blinds random inputs against the gateway's issuer public
 * key and info; the gateway evaluates them with a batch DLEQ proof; the client checks the proof
 * and finalizes. A token is (key epoch, input, output). Redemption: the gateway, which holds
 * the secret key, recomputes the output for the input and info and compares. The gateway never
 * saw the input at issuance, so a redeemed token is unlinkable to the issuance batch, and it
 * cannot tell which contact of the recipient redeemed it.
 */
import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { randomBytes } from 'node:crypto';
import { noblePoprf, selectPoprf, type PoprfEvaluator, type PoprfSelection } from './poprf.ts';

export { makeSodiumPoprf, noblePoprf, selectPoprf, loadSodiumRistretto, type PoprfEvaluator, type PoprfSelection, type SodiumRistretto } from './poprf.ts';

export const TOKEN_INPUT_LENGTH = 32;
export const TOKEN_OUTPUT_LENGTH = 64;
/** u32 key epoch || input || output */
export const TOKEN_LENGTH = 4 + TOKEN_INPUT_LENGTH + TOKEN_OUTPUT_LENGTH;
const INFO_PREFIX = new TextEncoder().encode('postmix-token-v1');

export interface Token {
  readonly keyEpoch: number;
  readonly input: Uint8Array;
  readonly output: Uint8Array;
}

export interface IssuerKeys {
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

/** Addresses compare case-insensitively: tokens and routing use the lower-cased form. */
export function normalizeRecipient(address: string): string {
  return address.trim().toLowerCase();
}

export function tokenInfo(recipient: string, keyEpoch: number): Uint8Array {
  const r = new TextEncoder().encode(normalizeRecipient(recipient));
  const out = new Uint8Array(INFO_PREFIX.length + 4 + r.length);
  out.set(INFO_PREFIX, 0);
  new DataView(out.buffer).setUint32(INFO_PREFIX.length, keyEpoch >>> 0);
  out.set(r, INFO_PREFIX.length + 4);
  return out;
}

const poprf = (recipient: string, keyEpoch: number) => ristretto255_oprf.poprf(tokenInfo(recipient, keyEpoch));

export function generateIssuerKeys(): IssuerKeys {
  const k = ristretto255_oprf.poprf(INFO_PREFIX).generateKeyPair();
  return { secretKey: k.secretKey, publicKey: k.publicKey };
}

/** Deterministic issuer keys from a 32-byte seed (so a gateway can keep one seed file). */
export function deriveIssuerKeys(seed: Uint8Array): IssuerKeys {
  const k = ristretto255_oprf.poprf(INFO_PREFIX).deriveKeyPair(seed, INFO_PREFIX);
  return { secretKey: k.secretKey, publicKey: k.publicKey };
}

/** The client's secret state between request and response. */
export interface IssuanceState {
  readonly recipient: string;
  readonly keyEpoch: number;
  readonly issuerPublicKey: Uint8Array;
  readonly inputs: readonly Uint8Array[];
  readonly blinds: readonly Uint8Array[];
  readonly blinded: readonly Uint8Array[];
  readonly tweakedKey: Uint8Array;
}

/** Client: blind `count` fresh random inputs. Send `state.blinded` to the gateway. */
export function requestTokens(issuerPublicKey: Uint8Array, recipient: string, keyEpoch: number, count: number): IssuanceState {
  if (!Number.isInteger(count) || count < 1 || count > 1000) throw new RangeError('count must be 1..1000');
  const p = poprf(recipient, keyEpoch);
  const inputs: Uint8Array[] = [];
  const blinds: Uint8Array[] = [];
  const blinded: Uint8Array[] = [];
  let tweakedKey = new Uint8Array(0);
  for (let i = 0; i < count; i++) {
    const input = new Uint8Array(randomBytes(TOKEN_INPUT_LENGTH));
    const b = p.blind(input, issuerPublicKey);
    inputs.push(input);
    blinds.push(b.blind);
    blinded.push(b.blinded);
    tweakedKey = b.tweakedKey;
  }
  return { recipient: normalizeRecipient(recipient), keyEpoch, issuerPublicKey, inputs, blinds, blinded, tweakedKey };
}

export interface IssuanceResponse {
  readonly evaluated: readonly Uint8Array[];
  readonly proof: Uint8Array;
}

/** Gateway: evaluate a batch of blinded elements for one recipient and key epoch. Throws on bad points. */
export function issueTokens(issuer: IssuerKeys, recipient: string, keyEpoch: number, blinded: readonly Uint8Array[]): IssuanceResponse {
  const r = poprf(recipient, keyEpoch).blindEvaluateBatch(issuer.secretKey, [...blinded]);
  return { evaluated: r.evaluated, proof: r.proof };
}

export class TokenProofError extends Error {
  override readonly name = 'TokenProofError';
}

/** Client: check the gateway's proof and finalize the tokens. Throws TokenProofError if the proof fails. */
export function finalizeTokens(state: IssuanceState, res: IssuanceResponse): Token[] {
  if (res.evaluated.length !== state.inputs.length) throw new TokenProofError('the gateway answered a different number of tokens');
  const p = poprf(state.recipient, state.keyEpoch);
  let outputs: Uint8Array[];
  try {
    outputs = p.finalizeBatch(
      state.inputs.map((input, i) => ({ input, blind: state.blinds[i]!, evaluated: res.evaluated[i]!, blinded: state.blinded[i]! })),
      res.proof,
      state.tweakedKey,
    );
  } catch (e) {
    throw new TokenProofError(`the gateway's proof does not verify: ${(e as Error).message}`);
  }
  return outputs.map((output, i) => ({ keyEpoch: state.keyEpoch, input: state.inputs[i]!, output }));
}

function ctEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
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
    return ctEqual(expect, token.output);
  } catch {
    return false;
  }
}

const SPENT_DOMAIN = new TextEncoder().encode('postmix-token-spent-v1|');
const FRAGMENT_TOKEN_DOMAIN = new TextEncoder().encode('postmix-fragment-token-v1|');

function domainHash(domain: Uint8Array, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(domain.length + data.length);
  b.set(domain);
  b.set(data, domain.length);
  return sha256(b);
}

/**
 * The spent-set key of a token: SHA-256 over a domain and its input (random 32 bytes, unique
 * per token), in hex. The gateway stores this, never the input, so its database cannot be
 * matched against the tokens a contact's wallet still holds without the token in hand.
 */
export function tokenSpendKey(token: Token): string {
  return bytesToHex(domainHash(SPENT_DOMAIN, token.input));
}

/** A digest of the token bytes a fragment carries (any bytes), for checking that later fragments carry the same. */
export function fragmentTokenDigest(token: Uint8Array): Uint8Array {
  return domainHash(FRAGMENT_TOKEN_DOMAIN, token);
}

export function encodeToken(t: Token): Uint8Array {
  const out = new Uint8Array(TOKEN_LENGTH);
  new DataView(out.buffer).setUint32(0, t.keyEpoch >>> 0);
  out.set(t.input, 4);
  out.set(t.output, 4 + TOKEN_INPUT_LENGTH);
  return out;
}

export function decodeToken(b: Uint8Array): Token | null {
  if (b.length !== TOKEN_LENGTH) return null;
  return {
    keyEpoch: new DataView(b.buffer, b.byteOffset, 4).getUint32(0),
    input: b.slice(4, 4 + TOKEN_INPUT_LENGTH),
    output: b.slice(4 + TOKEN_INPUT_LENGTH),
  };
}

/** A bundle a recipient hands to a contact: JSON, so it can ride inside ordinary (encrypted) mail. */
export interface TokenBundle {
  readonly v: 1;
  readonly recipient: string;
  readonly keyEpoch: number;
  /** hex of the gateway's issuer public key the tokens were checked against */
  readonly issuerPublicKey: string;
  /** hex of encoded tokens */
  readonly tokens: readonly string[];
}

export function makeBundle(recipient: string, issuerPublicKey: Uint8Array, tokens: readonly Token[]): TokenBundle {
  const keyEpoch = tokens[0]?.keyEpoch ?? 0;
  return {
    v: 1,
    recipient: normalizeRecipient(recipient),
    keyEpoch,
    issuerPublicKey: bytesToHex(issuerPublicKey),
    tokens: tokens.map((t) => bytesToHex(encodeToken(t))),
  };
}

export class BundleError extends Error {
  override readonly name = 'BundleError';
}

/** Parses an untrusted bundle; throws BundleError with the reason. */
export function parseBundle(text: string): { recipient: string; keyEpoch: number; issuerPublicKey: Uint8Array; tokens: Token[] } {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw new BundleError('token bundle is not JSON');
  }
  const o = j as Partial<TokenBundle>;
  if (!o || typeof o !== 'object' || o.v !== 1) throw new BundleError('token bundle: unknown version (want v: 1)');
  if (typeof o.recipient !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(o.recipient)) throw new BundleError('token bundle: bad recipient');
  if (!Number.isInteger(o.keyEpoch) || (o.keyEpoch as number) < 0) throw new BundleError('token bundle: bad keyEpoch');
  const hex = (s: unknown, n?: number) => {
    if (typeof s !== 'string' || !/^([0-9a-f]{2})*$/.test(s) || (n !== undefined && s.length !== n * 2)) return null;
    return Uint8Array.from(Buffer.from(s, 'hex'));
  };
  const pk = hex(o.issuerPublicKey, 32);
  if (!pk) throw new BundleError('token bundle: bad issuerPublicKey');
  if (!Array.isArray(o.tokens) || o.tokens.length === 0 || o.tokens.length > 100_000) throw new BundleError('token bundle: no tokens');
  const tokens: Token[] = [];
  for (const t of o.tokens) {
    const b = hex(t, TOKEN_LENGTH);
    const tok = b && decodeToken(b);
    if (!tok) throw new BundleError('token bundle: a token is malformed');
    if (tok.keyEpoch !== o.keyEpoch) throw new BundleError('token bundle: a token has another key epoch');
    tokens.push(tok);
  }
  return { recipient: normalizeRecipient(o.recipient), keyEpoch: o.keyEpoch as number, issuerPublicKey: pk, tokens };
}
