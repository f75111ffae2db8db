/**
 * Protobuf codecs for proto/pki.proto (docs/spec/pki.md §3). The schema is parsed once, at load
 * time, by protobufjs (`protobuf.parse` of the .proto text in schema.ts, no generated code).
 * Every decoder:
 *   - refuses input above a size limit before parsing ('oversized'),
 *   - maps protobufjs failures to 'truncated' / 'malformed',
 *   - checks every field (lengths, ranges, counts) ('invalid-field', 'wrong-version'),
 *   - re-encodes the result and rejects bytes that differ ('non-canonical'),
 * and throws only PkiError.
 */
import protobuf from 'protobufjs';
import { MAX_KEYS_AHEAD } from './epoch.ts';
import { PkiError } from './errors.ts';
import { hex } from './keys.ts';
import { PKI_PROTO } from './schema.ts';
import type { MixingParams } from '../mixing/params.ts';

const root = protobuf.parse(PKI_PROTO, { keepCase: false }).root;
const T = (name: string): protobuf.Type => root.lookupType(`postmix.pki.v1.${name}`);
const DescriptorBodyT = T('DescriptorBody');
const SignedDescriptorT = T('SignedDescriptor');
const DocumentBodyT = T('DocumentBody');
const SignedDocumentT = T('SignedDocument');
const VoteBodyT = T('VoteBody');
const SignedVoteT = T('SignedVote');

export const PKI_VERSION = 1;

export const LIMITS = Object.freeze({
  descriptorBytes: 8 * 1024,
  documentBytes: 2 * 1024 * 1024,
  voteBytes: 4 * 1024 * 1024,
  addresses: 8,
  addressLength: 256,
  peerIdLength: 128,
  /** a descriptor's Sphinx keys: its epoch's and up to MAX_KEYS_AHEAD more */
  sphinxKeys: MAX_KEYS_AHEAD + 1,
  domains: 256,
  domainLength: 253,
  issuerKeys: 16,
  issuerKeyLength: 1024,
  urlLength: 2048,
  layers: 16,
  nodes: 10_000,
  authorities: 16,
});

export type Role = 'mix' | 'gateway';
export type RecipientPolicy = 'token-required' | 'open-rate-limited';
const ROLE_NUM: Record<Role, number> = { mix: 1, gateway: 2 };
const POLICY_NUM: Record<RecipientPolicy, number> = { 'token-required': 1, 'open-rate-limited': 2 };

export interface SphinxKeyEntry {
  readonly epoch: number;
  readonly publicKey: Uint8Array;
  readonly signature: Uint8Array;
}

/** Opaque token-issuer public key for one recipient-key epoch (the token format lives elsewhere). */
export interface TokenIssuerKey {
  readonly keyEpoch: number;
  readonly publicKey: Uint8Array;
}

export interface GatewayInfo {
  readonly domains: readonly string[];
  readonly issuerKeys: readonly TokenIssuerKey[];
  /** Where recipients' token keys can be fetched instead of (or besides) issuerKeys; '' if none. */
  readonly keyDirectoryUrl: string;
  readonly policy: RecipientPolicy;
}

export interface DescriptorBody {
  readonly version: number;
  readonly identityKey: Uint8Array;
  readonly peerId: string;
  readonly addresses: readonly string[];
  readonly role: Role;
  /** 0 = no preference, else 1..L. */
  readonly layerPreference: number;
  readonly epoch: number;
  readonly sphinxKeys: readonly SphinxKeyEntry[];
  readonly gateway?: GatewayInfo | undefined;
  readonly publishedAt: number;
}

export interface SignedDescriptor {
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
}

export interface NodeEntry {
  readonly nodeId: Uint8Array;
  readonly identityKey: Uint8Array;
  readonly peerId: string;
  readonly addresses: readonly string[];
  /** The node's Sphinx key for the document's epoch E. */
  readonly sphinxKey: Uint8Array;
  /** Its keys for E + 1, E + 2, … in order (at most the document's keys-ahead count). */
  readonly sphinxKeysAhead: readonly Uint8Array[];
  /** 1..L for mixes, 0 for gateways. */
  readonly layer: number;
  readonly gateway?: GatewayInfo | undefined;
}

export interface DocumentBody {
  readonly version: number;
  readonly epoch: number;
  /** Unix seconds: the start of epoch E. */
  readonly validAfter: number;
  /** Unix seconds: the end of epoch E, by when the next document is due. */
  readonly freshUntil: number;
  readonly epochLength: number;
  readonly grace: number;
  readonly geometry: { readonly maxHops: number; readonly perHopSize: number; readonly payloadSize: number };
  readonly mixing: MixingParams;
  readonly layers: readonly (readonly NodeEntry[])[];
  readonly gateways: readonly NodeEntry[];
  readonly authorities: readonly Uint8Array[];
  readonly threshold: number;
  readonly previousDigest: Uint8Array;
  /**
   * Unix seconds: the end of epoch E + k, where k (0..MAX_KEYS_AHEAD) is how many epochs ahead
   * the document lists keys for. No packet is built under the document after it
   * (proto/pki/validity.ts).
   */
  readonly validUntil: number;
}

export interface AuthoritySignature {
  readonly authorityKey: Uint8Array;
  readonly signature: Uint8Array;
}

export interface SignedDocument {
  readonly body: Uint8Array;
  readonly signatures: readonly AuthoritySignature[];
}

export interface VoteBody {
  readonly version: number;
  readonly epoch: number;
  readonly authorityKey: Uint8Array;
  readonly descriptors: readonly Uint8Array[];
  readonly previousDigest: Uint8Array;
}

export interface SignedVote {
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// helpers

type Obj = Record<string, unknown>;

/** Drops proto3 default values so encoding is canonical. */
function strip(o: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || v === null || v === 0 || v === '' || v === false) continue;
    if (v instanceof Uint8Array && v.length === 0) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    out[k] = v;
  }
  return out;
}

function enc(t: protobuf.Type, o: Obj): Uint8Array {
  const bytes = t.encode(t.fromObject(o)).finish();
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice();
}

function dec(t: protobuf.Type, bytes: Uint8Array, limit: number, what: string): Obj {
  if (!(bytes instanceof Uint8Array)) throw new PkiError('malformed', `${what}: not bytes`);
  if (bytes.length > limit) throw new PkiError('oversized', `${what}: ${bytes.length} bytes > limit ${limit}`);
  let m: protobuf.Message;
  try {
    m = t.decode(bytes);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/index out of range/i.test(msg)) throw new PkiError('truncated', `${what}: ${msg}`);
    throw new PkiError('malformed', `${what}: ${msg}`);
  }
  return t.toObject(m, { defaults: true, arrays: true, enums: Number, longs: Number }) as Obj;
}

function u8(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return new Uint8Array(v); // copies Buffer views into plain arrays
  return new Uint8Array(0);
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function need(cond: boolean, what: string): void {
  if (!cond) throw new PkiError('invalid-field', what);
}

function checkLen(b: Uint8Array, len: number, what: string): void {
  need(b.length === len, `${what} must be ${len} bytes, got ${b.length}`);
}

function checkString(s: string, max: number, what: string): void {
  need(s.length > 0 && s.length <= max, `${what} must be 1..${max} characters`);
  // printable ASCII only: addresses, peer ids, domains and URLs need nothing else
  need(/^[\x21-\x7e]+$/.test(s), `${what} must be printable ASCII without spaces`);
}

function canonical(bytes: Uint8Array, reencoded: Uint8Array, what: string): void {
  if (bytes.length !== reencoded.length || !bytes.every((b, i) => b === reencoded[i]))
    throw new PkiError('non-canonical', `${what} does not re-encode to the same bytes`);
}

function roleFromNum(n: unknown): Role {
  if (n === 1) return 'mix';
  if (n === 2) return 'gateway';
  throw new PkiError('invalid-field', `role must be mix (1) or gateway (2), got ${String(n)}`);
}

function policyFromNum(n: unknown): RecipientPolicy {
  if (n === 1) return 'token-required';
  if (n === 2) return 'open-rate-limited';
  throw new PkiError('invalid-field', `recipient policy must be 1 or 2, got ${String(n)}`);
}

const DOMAIN_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;

export function isValidMailDomain(d: string): boolean {
  return DOMAIN_RE.test(d);
}

// ---------------------------------------------------------------------------------------------
// gateway info

function gatewayToObj(g: GatewayInfo): Obj {
  return strip({
    domains: [...g.domains],
    issuerKeys: g.issuerKeys.map((k) => strip({ keyEpoch: k.keyEpoch, publicKey: k.publicKey })),
    keyDirectoryUrl: g.keyDirectoryUrl,
    policy: POLICY_NUM[g.policy],
  });
}

function gatewayFromObj(o: Obj): GatewayInfo {
  const domains = arr(o.domains).map(String);
  need(domains.length >= 1 && domains.length <= LIMITS.domains, `gateway must serve 1..${LIMITS.domains} domains`);
  for (const d of domains) need(isValidMailDomain(d), `gateway domain "${d.slice(0, 64)}" is not a lower-case DNS name`);
  need(new Set(domains).size === domains.length, 'gateway domains must be distinct');
  const issuerKeys = arr(o.issuerKeys).map((k) => {
    const ko = k as Obj;
    const publicKey = u8(ko.publicKey);
    need(publicKey.length >= 1 && publicKey.length <= LIMITS.issuerKeyLength, `token issuer key must be 1..${LIMITS.issuerKeyLength} bytes`);
    return { keyEpoch: Number(ko.keyEpoch), publicKey };
  });
  need(issuerKeys.length <= LIMITS.issuerKeys, `at most ${LIMITS.issuerKeys} token issuer keys`);
  need(new Set(issuerKeys.map((k) => k.keyEpoch)).size === issuerKeys.length, 'one token issuer key per recipient-key epoch');
  const keyDirectoryUrl = String(o.keyDirectoryUrl ?? '');
  if (keyDirectoryUrl !== '') {
    checkString(keyDirectoryUrl, LIMITS.urlLength, 'key directory URL');
    need(/^https?:\/\//.test(keyDirectoryUrl), 'key directory URL must be http(s)');
  }
  need(issuerKeys.length > 0 || keyDirectoryUrl !== '', 'a gateway needs token issuer keys or a key directory URL');
  return { domains, issuerKeys, keyDirectoryUrl, policy: policyFromNum(o.policy) };
}

// ---------------------------------------------------------------------------------------------
// descriptors

export function encodeDescriptorBody(d: DescriptorBody): Uint8Array {
  return enc(
    DescriptorBodyT,
    strip({
      version: d.version,
      identityKey: d.identityKey,
      peerId: d.peerId,
      addresses: [...d.addresses],
      role: ROLE_NUM[d.role],
      layerPreference: d.layerPreference,
      epoch: d.epoch,
      sphinxKeys: d.sphinxKeys.map((k) => strip({ epoch: k.epoch, publicKey: k.publicKey, signature: k.signature })),
      gateway: d.gateway ? gatewayToObj(d.gateway) : undefined,
      publishedAt: d.publishedAt,
    }),
  );
}

export function decodeDescriptorBody(bytes: Uint8Array): DescriptorBody {
  const o = dec(DescriptorBodyT, bytes, LIMITS.descriptorBytes, 'descriptor body');
  if (o.version !== PKI_VERSION) throw new PkiError('wrong-version', `descriptor version ${String(o.version)}`);
  const identityKey = u8(o.identityKey);
  checkLen(identityKey, 32, 'identity key');
  const peerId = String(o.peerId);
  checkString(peerId, LIMITS.peerIdLength, 'peer id');
  const addresses = arr(o.addresses).map(String);
  need(addresses.length >= 1 && addresses.length <= LIMITS.addresses, `1..${LIMITS.addresses} addresses`);
  for (const a of addresses) {
    checkString(a, LIMITS.addressLength, 'address');
    need(a.startsWith('/'), 'address must be a multiaddr');
  }
  const role = roleFromNum(o.role);
  const layerPreference = Number(o.layerPreference);
  need(layerPreference <= LIMITS.layers, `layer preference must be 0..${LIMITS.layers}`);
  const sphinxKeys = arr(o.sphinxKeys).map((k) => {
    const ko = k as Obj;
    const s = { epoch: Number(ko.epoch), publicKey: u8(ko.publicKey), signature: u8(ko.signature) };
    checkLen(s.publicKey, 32, 'Sphinx public key');
    checkLen(s.signature, 64, 'Sphinx key signature');
    return s;
  });
  need(sphinxKeys.length >= 1 && sphinxKeys.length <= LIMITS.sphinxKeys, `1..${LIMITS.sphinxKeys} Sphinx keys`);
  need(
    sphinxKeys.every((k, i) => i === 0 || sphinxKeys[i - 1]!.epoch < k.epoch),
    'Sphinx keys must be sorted by epoch, one per epoch',
  );
  // one key for two epochs would let a packet of one epoch be replayed in the next
  need(new Set(sphinxKeys.map((k) => hex(k.publicKey))).size === sphinxKeys.length, 'each epoch needs its own Sphinx key');
  const epoch = Number(o.epoch);
  need(
    sphinxKeys.some((k) => k.epoch === epoch),
    `descriptor for epoch ${epoch} must carry that epoch's Sphinx key`,
  );
  const gateway = o.gateway ? gatewayFromObj(o.gateway as Obj) : undefined;
  need((role === 'gateway') === (gateway !== undefined), 'gateway info is required for gateways and forbidden for mixes');
  const d: DescriptorBody = {
    version: PKI_VERSION,
    identityKey,
    peerId,
    addresses,
    role,
    layerPreference,
    epoch,
    sphinxKeys,
    gateway,
    publishedAt: Number(o.publishedAt),
  };
  canonical(bytes, encodeDescriptorBody(d), 'descriptor body');
  return d;
}

export function encodeSignedDescriptor(s: SignedDescriptor): Uint8Array {
  return enc(SignedDescriptorT, strip({ body: s.body, signature: s.signature }));
}

export function decodeSignedDescriptor(bytes: Uint8Array): SignedDescriptor {
  const o = dec(SignedDescriptorT, bytes, LIMITS.descriptorBytes, 'signed descriptor');
  const s = { body: u8(o.body), signature: u8(o.signature) };
  checkLen(s.signature, 64, 'descriptor signature');
  need(s.body.length > 0, 'descriptor body is empty');
  canonical(bytes, encodeSignedDescriptor(s), 'signed descriptor');
  return s;
}

// ---------------------------------------------------------------------------------------------
// documents

function nodeToObj(n: NodeEntry): Obj {
  return strip({
    nodeId: n.nodeId,
    identityKey: n.identityKey,
    peerId: n.peerId,
    addresses: [...n.addresses],
    sphinxKey: n.sphinxKey,
    sphinxKeysAhead: [...n.sphinxKeysAhead],
    layer: n.layer,
    gateway: n.gateway ? gatewayToObj(n.gateway) : undefined,
  });
}

function nodeFromObj(o: Obj): NodeEntry {
  const n: NodeEntry = {
    nodeId: u8(o.nodeId),
    identityKey: u8(o.identityKey),
    peerId: String(o.peerId),
    addresses: arr(o.addresses).map(String),
    sphinxKey: u8(o.sphinxKey),
    sphinxKeysAhead: arr(o.sphinxKeysAhead).map(u8),
    layer: Number(o.layer),
    gateway: o.gateway ? gatewayFromObj(o.gateway as Obj) : undefined,
  };
  checkLen(n.nodeId, 32, 'node id');
  checkLen(n.identityKey, 32, 'identity key');
  checkLen(n.sphinxKey, 32, 'Sphinx key');
  need(n.sphinxKeysAhead.length <= MAX_KEYS_AHEAD, `at most ${MAX_KEYS_AHEAD} Sphinx keys ahead`);
  for (const k of n.sphinxKeysAhead) checkLen(k, 32, 'Sphinx key ahead');
  checkString(n.peerId, LIMITS.peerIdLength, 'peer id');
  need(n.addresses.length >= 1 && n.addresses.length <= LIMITS.addresses, `1..${LIMITS.addresses} addresses`);
  for (const a of n.addresses) checkString(a, LIMITS.addressLength, 'address');
  return n;
}

export function encodeDocumentBody(d: DocumentBody): Uint8Array {
  return enc(
    DocumentBodyT,
    strip({
      version: d.version,
      epoch: d.epoch,
      validAfter: d.validAfter,
      freshUntil: d.freshUntil,
      epochLength: d.epochLength,
      grace: d.grace,
      geometry: strip({ ...d.geometry }),
      mixing: strip({ ...d.mixing }),
      layers: d.layers.map((l) => strip({ nodes: l.map(nodeToObj) })),
      gateways: d.gateways.map(nodeToObj),
      authorities: [...d.authorities],
      threshold: d.threshold,
      previousDigest: d.previousDigest,
      validUntil: d.validUntil,
    }),
  );
}

export function decodeDocumentBody(bytes: Uint8Array): DocumentBody {
  const o = dec(DocumentBodyT, bytes, LIMITS.documentBytes, 'document body');
  if (o.version !== PKI_VERSION) throw new PkiError('wrong-version', `document version ${String(o.version)}`);
  const g = (o.geometry ?? {}) as Obj;
  const m = (o.mixing ?? {}) as Obj;
  const layersRaw = arr(o.layers);
  need(layersRaw.length >= 1 && layersRaw.length <= LIMITS.layers, `1..${LIMITS.layers} layers`);
  const layers = layersRaw.map((l) => arr((l as Obj).nodes).map((n) => nodeFromObj(n as Obj)));
  const gateways = arr(o.gateways).map((n) => nodeFromObj(n as Obj));
  need(layers.reduce((a, l) => a + l.length, 0) + gateways.length <= LIMITS.nodes, `at most ${LIMITS.nodes} nodes`);
  layers.forEach((l, i) => l.forEach((n) => need(n.layer === i + 1 && n.gateway === undefined, `mix in layer ${i + 1} must say layer ${i + 1}`)));
  gateways.forEach((n) => need(n.layer === 0 && n.gateway !== undefined, 'gateway entries need layer 0 and gateway info'));
  const authorities = arr(o.authorities).map(u8);
  need(authorities.length >= 1 && authorities.length <= LIMITS.authorities, `1..${LIMITS.authorities} authorities`);
  authorities.forEach((a) => checkLen(a, 32, 'authority key'));
  const d: DocumentBody = {
    version: PKI_VERSION,
    epoch: Number(o.epoch),
    validAfter: Number(o.validAfter),
    freshUntil: Number(o.freshUntil),
    epochLength: Number(o.epochLength),
    grace: Number(o.grace),
    geometry: { maxHops: Number(g.maxHops ?? 0), perHopSize: Number(g.perHopSize ?? 0), payloadSize: Number(g.payloadSize ?? 0) },
    mixing: {
      lambdaP: Number(m.lambdaP ?? 0),
      lambdaL: Number(m.lambdaL ?? 0),
      lambdaD: Number(m.lambdaD ?? 0),
      lambdaM: Number(m.lambdaM ?? 0),
      lambdaG: Number(m.lambdaG ?? 0),
      mu: Number(m.mu ?? 0),
    },
    layers,
    gateways,
    authorities,
    threshold: Number(o.threshold),
    previousDigest: u8(o.previousDigest),
    validUntil: Number(o.validUntil),
  };
  need(d.epochLength >= 1 && d.freshUntil === d.validAfter + d.epochLength, 'fresh_until must be valid_after plus one epoch');
  const ahead = (d.validUntil - d.freshUntil) / d.epochLength;
  need(Number.isInteger(ahead) && ahead >= 0 && ahead <= MAX_KEYS_AHEAD, `valid_until must be fresh_until plus 0..${MAX_KEYS_AHEAD} epochs`);
  // so that the document as of any epoch it covers lists every one of its nodes (validity.ts)
  for (const n of [...layers.flat(), ...gateways])
    need(n.sphinxKeysAhead.length === ahead, `a node lists ${n.sphinxKeysAhead.length} keys ahead in a document valid ${ahead} epoch(s) ahead`);
  need(d.threshold >= 1 && d.threshold <= authorities.length, 'threshold must be 1..number of authorities');
  need(d.previousDigest.length === 0 || d.previousDigest.length === 32, 'previous digest must be empty or 32 bytes');
  canonical(bytes, encodeDocumentBody(d), 'document body');
  return d;
}

export function encodeSignedDocument(s: SignedDocument): Uint8Array {
  return enc(SignedDocumentT, strip({ body: s.body, signatures: s.signatures.map((x) => strip({ authorityKey: x.authorityKey, signature: x.signature })) }));
}

export function decodeSignedDocument(bytes: Uint8Array): SignedDocument {
  const o = dec(SignedDocumentT, bytes, LIMITS.documentBytes + 64 * 1024, 'signed document');
  const s: SignedDocument = {
    body: u8(o.body),
    signatures: arr(o.signatures).map((x) => ({ authorityKey: u8((x as Obj).authorityKey), signature: u8((x as Obj).signature) })),
  };
  need(s.body.length > 0, 'document body is empty');
  need(s.signatures.length <= LIMITS.authorities, `at most ${LIMITS.authorities} signatures`);
  for (const x of s.signatures) {
    checkLen(x.authorityKey, 32, 'authority key');
    checkLen(x.signature, 64, 'authority signature');
  }
  canonical(bytes, encodeSignedDocument(s), 'signed document');
  return s;
}

// ---------------------------------------------------------------------------------------------
// votes

export function encodeVoteBody(v: VoteBody): Uint8Array {
  return enc(
    VoteBodyT,
    strip({ version: v.version, epoch: v.epoch, authorityKey: v.authorityKey, descriptors: [...v.descriptors], previousDigest: v.previousDigest }),
  );
}

export function decodeVoteBody(bytes: Uint8Array): VoteBody {
  const o = dec(VoteBodyT, bytes, LIMITS.voteBytes, 'vote body');
  if (o.version !== PKI_VERSION) throw new PkiError('wrong-version', `vote version ${String(o.version)}`);
  const v: VoteBody = {
    version: PKI_VERSION,
    epoch: Number(o.epoch),
    authorityKey: u8(o.authorityKey),
    descriptors: arr(o.descriptors).map(u8),
    previousDigest: u8(o.previousDigest),
  };
  checkLen(v.authorityKey, 32, 'authority key');
  need(v.descriptors.length <= LIMITS.nodes, `at most ${LIMITS.nodes} descriptors`);
  need(v.previousDigest.length === 0 || v.previousDigest.length === 32, 'previous digest must be empty or 32 bytes');
  canonical(bytes, encodeVoteBody(v), 'vote body');
  return v;
}

export function encodeSignedVote(s: SignedVote): Uint8Array {
  return enc(SignedVoteT, strip({ body: s.body, signature: s.signature }));
}

export function decodeSignedVote(bytes: Uint8Array): SignedVote {
  const o = dec(SignedVoteT, bytes, LIMITS.voteBytes + 1024, 'signed vote');
  const s = { body: u8(o.body), signature: u8(o.signature) };
  checkLen(s.signature, 64, 'vote signature');
  canonical(bytes, encodeSignedVote(s), 'signed vote');
  return s;
}
