/** Delivery tokens for tests: ones a gateway issued (the real POPRF steps), and forged ones. */
import { randomBytes } from 'node:crypto';
import { finalizeTokens, issueTokens, makeBundle, requestTokens, type EpochValidity, type IssuerKeys, type Token } from '../../proto/tokens/index.ts';

/** `count` tokens for `recipient`, blinded, evaluated by `issuer` and finalized as a client does. */
export function issuedTokens(issuer: IssuerKeys, recipient: string, keyEpoch: number, count: number): Token[] {
  const st = requestTokens(issuer.publicKey, recipient, keyEpoch, count);
  return finalizeTokens(st, issueTokens(issuer, recipient, keyEpoch, st.blinded));
}

/**
 * A bundle of syntactically valid tokens the issuer never computed (a forger's), for wallet and
 * routing tests and for what a gateway must refuse; `window` is the key epoch's (unix seconds).
 */
export function forgedBundle(
  recipient: string,
  n: number,
  keyEpoch = 1,
  issuer: Uint8Array = new Uint8Array(32).fill(3),
  window: EpochValidity = { notBefore: null, expires: null },
): string {
  const tokens: Token[] = [];
  for (let i = 0; i < n; i++) tokens.push({ keyEpoch, input: new Uint8Array(randomBytes(32)), output: new Uint8Array(randomBytes(64)) });
  return JSON.stringify(makeBundle(recipient, issuer, tokens, () => window));
}
