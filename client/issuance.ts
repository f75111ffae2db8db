/**
 * The recipient's side of issuance (docs/spec/tokens.md, "Issuance"): request tokens from the
 * user's own gateway over its HTTP endpoint, and hand them out one bundle per contact.
 *
 * The client blinds every input before it leaves (RFC 9497 Blind), so the gateway evaluates
 * elements it cannot relate to the tokens that are redeemed later. Everything the gateway says
 * is checked against what it cannot change on its own:
 * - the issuer key comes from the signed network document (the gateway's descriptor, signed by
 *   a threshold of directory authorities), never from the endpoint's answer: an answer naming
 *   another key is refused, and the batch DLEQ proof is verified against the document's key;
 * - the key epochs must fit what this client pinned before (client/permission.ts), so a gateway
 *   cannot put one contact's batch under an epoch of its own.
 */
import type { DocumentBody } from '../proto/pki/index.ts';
import { hex } from '../proto/util/bytes.ts';
import {
  finalizeTokens,
  issueRequestJson,
  makeBundle,
  normalizeRecipient,
  parseIssueAnswer,
  parseUserInfo,
  requestTokens,
  IssuanceProtocolError,
  TokenProofError,
  type KeyEpochWindow,
  type UserInfo,
} from '../proto/tokens/index.ts';
import { checkAnnouncedEpochs, type BundleRecord, type PermissionStore } from './permission.ts';

/** Why a request or an export did not happen, in words for the user. */
export class PermissionError extends Error {
  override readonly name = 'PermissionError';
}

export interface OwnGateway {
  readonly domain: string;
  /** from the signed network document */
  readonly issuerKey: Uint8Array;
  readonly url: string;
}

const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const short = (k: Uint8Array) => hex(k).slice(0, 16) + '…';
const isoS = (s: number | null) => (s === null ? 'no scheduled end' : new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'));

/** The user's own gateway in a verified document: its one issuer key and its endpoint (the configured URL wins). */
export function ownGateway(doc: DocumentBody, address: string, configuredUrl: string): OwnGateway {
  const addr = normalizeRecipient(address);
  const domain = addr.slice(addr.lastIndexOf('@') + 1);
  if (!addr.includes('@') || !domain) throw new PermissionError(`[tokens] address "${address}" is not a mail address`);
  const gw = doc.gateways.find((g) => g.gateway?.domains.includes(domain));
  if (!gw?.gateway) throw new PermissionError(`no postmix gateway serves ${domain} in network epoch ${doc.epoch}: your provider does not run one (yet)`);
  const keys = gw.gateway.issuerKeys;
  // one key per gateway (docs/spec/tokens.md): several would let it sort batches by key
  if (keys.length !== 1)
    throw new PermissionError(
      `the gateway for ${domain} publishes ${keys.length} issuer keys in network epoch ${doc.epoch}; postmix wants exactly one (refused)`,
    );
  const url = configuredUrl || gw.gateway.keyDirectoryUrl;
  if (!url) throw new PermissionError(`the gateway for ${domain} publishes no issuance URL; set [tokens] issuance_url in the client config`);
  return { domain, issuerKey: keys[0]!.publicKey, url };
}

export interface Endpoint {
  readonly url: string;
  readonly address: string;
  readonly secret: string;
  readonly timeoutMs: number;
}

async function call(ep: Endpoint, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const url = new URL(path.replace(/^\//, ''), ep.url.endsWith('/') ? ep.url : ep.url + '/');
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${normalizeRecipient(ep.address)}:${ep.secret}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(ep.timeoutMs),
    });
  } catch (e) {
    const why =
      (e as Error).name === 'TimeoutError' ? `no answer within ${ep.timeoutMs} ms` : ((e as { cause?: Error }).cause?.message ?? (e as Error).message);
    throw new PermissionError(`cannot reach the issuance endpoint ${url.origin}${url.pathname}: ${why}`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (res.ok) {
    if (json === undefined) throw new PermissionError(`the issuance endpoint answered ${res.status} with a body that is not JSON`);
    return json;
  }
  const said =
    json && typeof json === 'object' && typeof (json as { error?: unknown }).error === 'string' ? (json as { error: string }).error : text.slice(0, 200);
  if (res.status === 401) throw new PermissionError(`the gateway refused the credentials ([tokens] address and secret): ${said}`);
  if (res.status === 429) throw new PermissionError(`the gateway limits how many tokens you get: ${said}`);
  throw new PermissionError(`the issuance endpoint answered ${res.status}: ${said}`);
}

function parse<T>(f: (j: unknown) => T, j: unknown): T {
  try {
    return f(j);
  } catch (e) {
    if (e instanceof IssuanceProtocolError) throw new PermissionError(`the gateway's answer is malformed: ${e.message}`);
    throw e;
  }
}

export interface RequestOptions {
  readonly store: PermissionStore;
  readonly endpoint: Endpoint;
  readonly gateway: OwnGateway;
  /** accept a new key epoch that overlaps the known ones (the user knows its tokens were revoked) */
  readonly acceptEpoch?: number;
  /** accept an issuer key other than the pinned one (the provider announced a key change) */
  readonly acceptIssuerKey?: boolean;
  /** ms */
  readonly now?: () => number;
}

export interface Schedule {
  readonly info: UserInfo;
  readonly current: KeyEpochWindow;
  readonly next: KeyEpochWindow | undefined;
  /** what the user should hear (first contact, a policy change, a revocation accepted) */
  readonly notices: readonly string[];
}

/**
 * Learns the user's key epochs from the gateway (GET /v1/user, or POST /v1/rotate to revoke
 * every token given so far) and checks them against the pinned key and epochs.
 */
export async function learnSchedule(o: RequestOptions, rotate = false): Promise<Schedule> {
  const addr = normalizeRecipient(o.endpoint.address);
  const nowS = Math.floor((o.now ?? Date.now)() / 1000);
  const pinned = o.store.issuerKey(addr);
  if (pinned && !eq(pinned, o.gateway.issuerKey) && !o.acceptIssuerKey)
    throw new PermissionError(
      `the network document now lists issuer key ${short(o.gateway.issuerKey)} for the gateway of ${o.gateway.domain}, not ${short(pinned)} as at your last request; ` +
        `the tokens you gave out before stop working. If your provider announced a key change, run again with --accept-issuer-key`,
    );
  const info = parse(parseUserInfo, await call(o.endpoint, rotate ? 'POST' : 'GET', rotate ? '/v1/rotate' : '/v1/user'));
  if (info.recipient !== addr) throw new PermissionError(`the gateway answered for ${info.recipient}, not for ${addr} (refused)`);
  if (!eq(info.issuerPublicKey, o.gateway.issuerKey))
    throw new PermissionError(
      `the issuance endpoint says its issuer key is ${short(info.issuerPublicKey)}, but the signed network document lists ${short(o.gateway.issuerKey)} ` +
        `for the gateway of ${o.gateway.domain}: refused (a gateway must issue under its published key only)`,
    );
  const known = o.store.epochs(addr);
  const check = checkAnnouncedEpochs(known, info.epochs, rotate ? info.keyEpoch : o.acceptEpoch);
  if (!check.ok) throw new PermissionError(`refused: ${check.reason}`);
  const notices: string[] = [];
  if (known.length === 0)
    notices.push(`first request: pinned issuer key ${short(o.gateway.issuerKey)} and key epoch ${info.keyEpoch} (${isoS(info.epochs[0]!.ends)})`);
  if (check.revokeBelow !== null) notices.push(`key epoch ${check.revokeBelow} replaces the earlier ones: every token given before is revoked`);
  o.store.pinIssuerKey(addr, o.gateway.issuerKey, nowS);
  o.store.recordEpochs(addr, check.add, check.revokeBelow);
  return { info, current: info.epochs[0]!, next: info.epochs[1], notices };
}

/** Requests `count` tokens of `epoch` (one of the schedule's), in batches the gateway allows; they go into the store. */
export async function requestEpoch(o: RequestOptions, sched: Schedule, epoch: KeyEpochWindow, count: number): Promise<number> {
  const addr = normalizeRecipient(o.endpoint.address);
  const nowS = Math.floor((o.now ?? Date.now)() / 1000);
  let added = 0;
  for (let left = count; left > 0;) {
    const n = Math.min(left, sched.info.maxPerRequest);
    const st = requestTokens(o.gateway.issuerKey, addr, epoch.keyEpoch, n);
    const a = parse(parseIssueAnswer, await call(o.endpoint, 'POST', '/v1/issue', issueRequestJson({ keyEpoch: epoch.keyEpoch, blinded: st.blinded })));
    if (a.keyEpoch !== epoch.keyEpoch) throw new PermissionError(`asked for key epoch ${epoch.keyEpoch}, the gateway answered for ${a.keyEpoch} (refused)`);
    if (a.recipient !== addr) throw new PermissionError(`the gateway answered for ${a.recipient}, not for ${addr} (refused)`);
    if (!eq(a.issuerPublicKey, o.gateway.issuerKey))
      throw new PermissionError(`the issuance answer names issuer key ${short(a.issuerPublicKey)}, not the document's ${short(o.gateway.issuerKey)} (refused)`);
    let tokens;
    try {
      // the proof is checked against the key of the document (st carries it), not the answer's
      tokens = finalizeTokens(st, { evaluated: a.evaluated, proof: a.proof });
    } catch (e) {
      if (e instanceof TokenProofError)
        throw new PermissionError(`refused: ${e.message} (the gateway did not evaluate under the issuer key of the signed network document)`);
      throw e;
    }
    added += o.store.addTokens(addr, o.gateway.issuerKey, tokens, nowS);
    left -= n;
  }
  return added;
}

export type EpochChoice = 'auto' | 'current' | 'next' | 'both';

/** The epochs a bundle made now should carry: 'auto' adds the next one in the last quarter of the current one. */
export function epochsFor(sched: Pick<Schedule, 'current' | 'next'>, choice: EpochChoice, nowS: number): KeyEpochWindow[] {
  const { current, next } = sched;
  if (choice === 'current') return [current];
  if (choice === 'next' || choice === 'both') {
    if (!next) throw new PermissionError(`key epoch ${current.keyEpoch} has no scheduled end, so there is no next epoch to request`);
    return choice === 'next' ? [next] : [current, next];
  }
  const late = current.ends !== null && next !== undefined && current.ends - nowS < (current.ends - current.starts) / 4;
  return late ? [current, next!] : [current];
}

export interface ExportResult {
  readonly bundle: BundleRecord;
  readonly json: string;
  /** tokens requested from the gateway for this export */
  readonly requested: number;
  readonly epochs: readonly KeyEpochWindow[];
}

/**
 * One bundle for one contact: `count` tokens of each chosen epoch that no other contact got;
 * what is not held yet is requested first. `write` stores the bundle (e.g. the file) inside the
 * transaction that gives the tokens away, so a failed write gives nothing away.
 */
export async function exportFor(
  o: RequestOptions,
  sched: Schedule,
  contact: string,
  count: number,
  choice: EpochChoice,
  write: (json: string) => void,
): Promise<ExportResult> {
  const addr = normalizeRecipient(o.endpoint.address);
  const nowS = Math.floor((o.now ?? Date.now)() / 1000);
  const c = normalizeRecipient(contact);
  if (!/^[^@\s]+@[^@\s]+$/.test(c)) throw new PermissionError(`--for ${contact}: not a mail address`);
  const epochs = epochsFor(sched, choice, nowS);
  let requested = 0;
  for (const e of epochs) {
    const need = count - o.store.held(addr, e.keyEpoch);
    if (need > 0) requested += await requestEpoch(o, sched, e, need);
  }
  const windows = new Map(epochs.map((e) => [e.keyEpoch, e]));
  let json = '';
  const bundle = o.store.give(
    addr,
    c,
    epochs.map((e) => ({ keyEpoch: e.keyEpoch, count })),
    nowS,
    (b) => {
      const tokens = b.epochs.flatMap((e) => e.tokens);
      json =
        JSON.stringify(
          makeBundle(addr, o.gateway.issuerKey, tokens, (k) => ({ notBefore: windows.get(k)!.starts, expires: windows.get(k)!.ends })),
          null,
          1,
        ) + '\n';
      write(json);
    },
  );
  return { bundle, json, requested, epochs };
}
