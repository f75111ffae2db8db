/**
 * The issuance endpoint's JSON bodies (docs/spec/tokens.md, "Issuance"), which the gateway
 * writes and the recipient's client reads, and back. Every parser takes untrusted JSON and
 * either returns a typed value or says what is wrong; none throws anything else.
 *
 *   GET  /v1/user    → UserInfo
 *   POST /v1/issue   IssueRequest → IssueAnswer
 *   POST /v1/rotate  → UserInfo (a new key epoch from now; every earlier one is revoked)
 */
import { normalizeRecipient } from './token.ts';
import { hex, hexBytes } from '../util/bytes.ts';

/** One key epoch of a recipient: unix seconds; `ends` null when no end is scheduled. */
export interface KeyEpochWindow {
  readonly keyEpoch: number;
  readonly starts: number;
  readonly ends: number | null;
}

export interface UserInfo {
  readonly recipient: string;
  readonly policy: 'tokens' | 'open';
  readonly issuerPublicKey: Uint8Array;
  /** The current key epoch (the first of `epochs`). */
  readonly keyEpoch: number;
  /** The current key epoch and, when the current one ends, the next one (requestable ahead). */
  readonly epochs: readonly KeyEpochWindow[];
  /** Tokens of an epoch that ended by schedule still verify this long (mail in flight). */
  readonly graceS: number;
  readonly maxPerRequest: number;
}

export interface IssueRequest {
  readonly keyEpoch: number;
  readonly blinded: readonly Uint8Array[];
}

export interface IssueAnswer {
  readonly recipient: string;
  readonly keyEpoch: number;
  readonly issuerPublicKey: Uint8Array;
  readonly evaluated: readonly Uint8Array[];
  readonly proof: Uint8Array;
}

/** An answer that does not follow this format. */
export class IssuanceProtocolError extends Error {
  override readonly name = 'IssuanceProtocolError';
}

const isEpoch = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;
const isTime = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

function obj(j: unknown, what: string): Record<string, unknown> {
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new IssuanceProtocolError(`${what} is not a JSON object`);
  return j as Record<string, unknown>;
}

const windowJson = (w: KeyEpochWindow) => ({ keyEpoch: w.keyEpoch, starts: w.starts, ends: w.ends });

export function userInfoJson(u: UserInfo): Record<string, unknown> {
  return {
    recipient: u.recipient,
    policy: u.policy,
    issuerPublicKey: hex(u.issuerPublicKey),
    keyEpoch: u.keyEpoch,
    epochs: u.epochs.map(windowJson),
    graceS: u.graceS,
    maxPerRequest: u.maxPerRequest,
  };
}

function parseWindow(x: unknown): KeyEpochWindow {
  const w = obj(x, 'a key epoch');
  if (!isEpoch(w.keyEpoch) || !isTime(w.starts) || !(w.ends === null || isTime(w.ends)))
    throw new IssuanceProtocolError('a key epoch needs keyEpoch, starts and ends (unix seconds or null)');
  if (w.ends !== null && w.ends <= w.starts) throw new IssuanceProtocolError(`key epoch ${w.keyEpoch} ends before it starts`);
  return { keyEpoch: w.keyEpoch, starts: w.starts, ends: w.ends };
}

export function parseUserInfo(j: unknown): UserInfo {
  const o = obj(j, 'the user answer');
  if (typeof o.recipient !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(o.recipient)) throw new IssuanceProtocolError('the user answer has no recipient');
  if (o.policy !== 'tokens' && o.policy !== 'open') throw new IssuanceProtocolError('the user answer has no policy');
  const pk = hexBytes(o.issuerPublicKey, 32);
  if (!pk) throw new IssuanceProtocolError('the user answer has no issuer public key');
  if (!isEpoch(o.keyEpoch)) throw new IssuanceProtocolError('the user answer has no key epoch');
  if (!Array.isArray(o.epochs) || o.epochs.length < 1 || o.epochs.length > 2) throw new IssuanceProtocolError('the user answer lists no key epochs');
  const epochs = Array.from(o.epochs as unknown[], parseWindow); // Array.from visits holes too
  if (epochs[0]!.keyEpoch !== o.keyEpoch) throw new IssuanceProtocolError('the user answer: keyEpoch is not its first epoch');
  const next = epochs[1];
  if (next && (next.keyEpoch <= epochs[0]!.keyEpoch || epochs[0]!.ends === null || next.starts !== epochs[0]!.ends))
    throw new IssuanceProtocolError('the user answer: the next key epoch does not follow the current one');
  if (!isTime(o.graceS)) throw new IssuanceProtocolError('the user answer has no graceS');
  if (!Number.isInteger(o.maxPerRequest) || (o.maxPerRequest as number) < 1 || (o.maxPerRequest as number) > 1000)
    throw new IssuanceProtocolError('the user answer has no maxPerRequest');
  return {
    recipient: normalizeRecipient(o.recipient),
    policy: o.policy,
    issuerPublicKey: pk,
    keyEpoch: o.keyEpoch,
    epochs,
    graceS: o.graceS,
    maxPerRequest: o.maxPerRequest as number,
  };
}

export function issueRequestJson(r: IssueRequest): Record<string, unknown> {
  return { keyEpoch: r.keyEpoch, blinded: r.blinded.map(hex) };
}

/** The gateway's side: a request body, or the reason for a 400. Group-element validity is checked when evaluating. */
export function parseIssueRequest(j: unknown, maxPerRequest: number): { ok: true; request: IssueRequest } | { ok: false; error: string } {
  const want = `want {"keyEpoch": <integer>, "blinded": ["<64 hex>", ...]} with 1..${maxPerRequest} elements`;
  if (!j || typeof j !== 'object' || Array.isArray(j)) return { ok: false, error: `the body is not a JSON object: ${want}` };
  const o = j as Record<string, unknown>;
  if (!isEpoch(o.keyEpoch)) return { ok: false, error: `keyEpoch is missing or not an integer: ${want}` };
  if (!Array.isArray(o.blinded)) return { ok: false, error: `blinded is missing or not a list: ${want}` };
  if (o.blinded.length < 1 || o.blinded.length > maxPerRequest) return { ok: false, error: `${o.blinded.length} blinded elements: ${want}` };
  const blinded: Uint8Array[] = [];
  for (const x of o.blinded) {
    const b = hexBytes(x, 32);
    if (!b) return { ok: false, error: `a blinded element is not 64 lower-case hex digits: ${want}` };
    blinded.push(b);
  }
  return { ok: true, request: { keyEpoch: o.keyEpoch, blinded } };
}

export function issueAnswerJson(a: IssueAnswer): Record<string, unknown> {
  return { recipient: a.recipient, keyEpoch: a.keyEpoch, issuerPublicKey: hex(a.issuerPublicKey), evaluated: a.evaluated.map(hex), proof: hex(a.proof) };
}

export function parseIssueAnswer(j: unknown): IssueAnswer {
  const o = obj(j, 'the issuance answer');
  if (typeof o.recipient !== 'string') throw new IssuanceProtocolError('the issuance answer has no recipient');
  if (!isEpoch(o.keyEpoch)) throw new IssuanceProtocolError('the issuance answer has no key epoch');
  const pk = hexBytes(o.issuerPublicKey, 32);
  if (!pk) throw new IssuanceProtocolError('the issuance answer has no issuer public key');
  if (!Array.isArray(o.evaluated) || o.evaluated.length === 0 || o.evaluated.length > 1000)
    throw new IssuanceProtocolError('the issuance answer has no evaluated elements');
  const evaluated = Array.from(o.evaluated as unknown[], (x) => {
    const b = hexBytes(x, 32);
    if (!b) throw new IssuanceProtocolError('an evaluated element is not 32-byte hex');
    return b;
  });
  const proof = hexBytes(o.proof, 64);
  if (!proof) throw new IssuanceProtocolError('the issuance answer has no 64-byte proof');
  return { recipient: normalizeRecipient(o.recipient), keyEpoch: o.keyEpoch, issuerPublicKey: pk, evaluated, proof };
}
