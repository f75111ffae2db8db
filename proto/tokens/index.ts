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
 *
 * This file: issuer keys and the issuance steps. Redemption (`verifyToken`) is in poprf.ts, the
 * token bytes in token.ts, bundles in bundle.ts, the endpoint's JSON in issuance.ts.
 */
import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { randomBytes } from 'node:crypto';
import type { IssuerKeys } from './poprf.ts';
import { INFO_PREFIX, normalizeRecipient, tokenInfo, TOKEN_INPUT_LENGTH, type Token } from './token.ts';

export * from './token.ts';
export * from './bundle.ts';
export * from './issuance.ts';
export {
  makeSodiumPoprf,
  noblePoprf,
  selectPoprf,
  loadSodiumRistretto,
  tokenCheckBackend,
  useFastestTokenChecks,
  verifyToken,
  type IssuerKeys,
  type PoprfEvaluator,
  type PoprfSelection,
  type SodiumRistretto,
} from './poprf.ts';

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
