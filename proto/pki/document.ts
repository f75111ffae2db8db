/**
 * The network document (docs/spec/pki.md §3.2): building it from verified descriptors (the
 * authorities), signing it, and verifying it (every role). `verifyDocument` is THE check a
 * client, mix or gateway runs before trusting a document.
 */
import { validateGeometry, type Geometry } from '../sphinx/geometry.ts';
import { validateMixingParams, type MixingParams } from '../mixing/params.ts';
import {
  decodeDocumentBody,
  decodeSignedDocument,
  encodeDocumentBody,
  encodeSignedDocument,
  PKI_VERSION,
  type AuthoritySignature,
  type DocumentBody,
  type NodeEntry,
} from './codec.ts';
import { sphinxKeyFor, type VerifiedDescriptor } from './descriptor.ts';
import { DEFAULT_KEYS_AHEAD, epochEnd, epochStart, MAX_KEYS_AHEAD, type EpochConfig } from './epoch.ts';
import { PkiError } from './errors.ts';
import { bytesEqual, compareBytes, ed25519Sign, ed25519Verify, hex, sha256, type IdentityKey } from './keys.ts';
import { assignLayers } from './layers.ts';
import { documentSigningBytes } from './signing.ts';
import { lastKeyEpoch } from './validity.ts';

export interface DocumentParams {
  readonly epochConfig: EpochConfig;
  readonly geometry: Geometry;
  readonly mixing: MixingParams;
  readonly numLayers: number;
  /** Ed25519 public keys of all authorities (n). */
  readonly authorities: readonly Uint8Array[];
  readonly threshold: number;
  /**
   * How many epochs past its own the document lists keys for and stays usable (0..MAX_KEYS_AHEAD,
   * default DEFAULT_KEYS_AHEAD): the length of an authority outage the network rides through.
   */
  readonly keysAhead?: number;
}

/**
 * Builds the document body for `epoch` from descriptors the authorities agreed on. Pure and
 * deterministic: the same inputs give the same bytes on every authority. Descriptors must be
 * verified and for this epoch; among descriptors that clash (a Sphinx key of any epoch the
 * document lists, a mail domain) the one with the lower node id wins and the other is left out.
 */
export function buildDocumentBody(
  params: DocumentParams,
  epoch: number,
  descriptors: readonly VerifiedDescriptor[],
  previous?: { readonly body: DocumentBody; readonly digest: Uint8Array },
): DocumentBody {
  const wanted = params.keysAhead ?? DEFAULT_KEYS_AHEAD;
  if (!Number.isInteger(wanted) || wanted < 0 || wanted > MAX_KEYS_AHEAD) throw new RangeError(`keysAhead must be 0..${MAX_KEYS_AHEAD}, got ${wanted}`);
  // each node's keys for epoch, epoch + 1, … as far as its descriptor has them without a gap
  const run = (d: VerifiedDescriptor): Uint8Array[] => {
    const out: Uint8Array[] = [];
    for (let j = 0; j <= wanted; j++) {
      const k = sphinxKeyFor(d.body, epoch + j);
      if (!k) break;
      out.push(k);
    }
    return out;
  };
  const sorted = [...descriptors].sort((a, b) => compareBytes(a.nodeId, b.nodeId));
  const seenNode = new Set<string>();
  const seenSphinx = new Set<string>();
  const seenDomain = new Set<string>();
  const runs = new Map<string, Uint8Array[]>();
  const mixes: VerifiedDescriptor[] = [];
  const gateways: VerifiedDescriptor[] = [];
  for (const d of sorted) {
    if (d.body.epoch !== epoch) continue;
    const keys = run(d);
    if (keys.length === 0) continue;
    const id = hex(d.nodeId);
    if (seenNode.has(id) || keys.some((k) => seenSphinx.has(hex(k)))) continue;
    if (d.body.role === 'gateway') {
      const domains = d.body.gateway?.domains ?? [];
      if (domains.some((x) => seenDomain.has(x))) continue;
      domains.forEach((x) => seenDomain.add(x));
      gateways.push(d);
    } else mixes.push(d);
    seenNode.add(id);
    keys.forEach((k) => seenSphinx.add(hex(k)));
    runs.set(id, keys);
  }
  // the document is valid as far ahead as every node it lists has keys, so that it lists all
  // of them in every epoch it covers: a node that publishes fewer keys shortens it for everyone
  const ahead = Math.min(wanted, ...[...runs.values()].map((r) => r.length - 1));
  const prevLayers = new Map<string, number>();
  if (previous) previous.body.layers.forEach((l, i) => l.forEach((n) => prevLayers.set(hex(n.nodeId), i + 1)));
  const assignment = assignLayers(
    mixes.map((m) => ({ nodeId: m.nodeId, layerPreference: m.body.layerPreference })),
    params.numLayers,
    epoch,
    prevLayers,
  );
  const entry = (d: VerifiedDescriptor, layer: number): NodeEntry => ({
    nodeId: d.nodeId,
    identityKey: d.body.identityKey,
    peerId: d.body.peerId,
    addresses: d.body.addresses,
    sphinxKey: runs.get(hex(d.nodeId))![0]!,
    sphinxKeysAhead: runs.get(hex(d.nodeId))!.slice(1, 1 + ahead),
    layer,
    gateway: d.body.gateway,
  });
  const layers: NodeEntry[][] = Array.from({ length: params.numLayers }, () => []);
  for (const m of mixes) {
    const l = assignment.get(hex(m.nodeId))!;
    layers[l - 1]!.push(entry(m, l));
  }
  const c = params.epochConfig;
  return {
    version: PKI_VERSION,
    epoch,
    validAfter: epochStart(c, epoch),
    freshUntil: epochEnd(c, epoch),
    epochLength: c.length,
    grace: c.grace,
    geometry: { maxHops: params.geometry.maxHops, perHopSize: params.geometry.perHopSize, payloadSize: params.geometry.payloadSize },
    mixing: { ...params.mixing },
    layers,
    gateways: gateways.map((g) => entry(g, 0)),
    authorities: [...params.authorities].sort(compareBytes),
    threshold: params.threshold,
    previousDigest: previous?.digest ?? new Uint8Array(0),
    validUntil: epochEnd(c, epoch + ahead),
  };
}

export function signDocumentBody(identity: IdentityKey, body: Uint8Array): AuthoritySignature {
  return { authorityKey: identity.publicKey, signature: ed25519Sign(identity, documentSigningBytes(body)) };
}

/** Checks one authority signature over a body (no authority-set check). */
export function checkDocumentSignature(body: Uint8Array, sig: AuthoritySignature): boolean {
  return ed25519Verify(sig.authorityKey, documentSigningBytes(body), sig.signature);
}

/**
 * Encodes a SignedDocument from a body and signatures: keeps one valid signature per
 * authority (invalid ones are dropped), sorted by authority key.
 */
export function combineSignatures(body: Uint8Array, sigs: readonly AuthoritySignature[]): Uint8Array {
  const byKey = new Map<string, AuthoritySignature>();
  for (const s of sigs) if (!byKey.has(hex(s.authorityKey)) && checkDocumentSignature(body, s)) byKey.set(hex(s.authorityKey), s);
  const signatures = [...byKey.values()].sort((a, b) => compareBytes(a.authorityKey, b.authorityKey));
  return encodeSignedDocument({ body, signatures });
}

export interface VerifyOptions {
  /** The configured authority public keys (Ed25519, 32 bytes each). */
  readonly authorities: readonly Uint8Array[];
  /** Valid signatures needed from distinct configured authorities. */
  readonly threshold: number;
  /** Reject unless the document is for exactly this epoch ('wrong-epoch'). */
  readonly epoch?: number;
  /**
   * Unix seconds; when set, the document must not be over (valid_until + grace: its last keys'
   * grace window has passed) nor more than one epoch early.
   */
  readonly now?: number;
}

export interface VerifiedDocument {
  /** The SignedDocument bytes as received (cache these). */
  readonly bytes: Uint8Array;
  readonly body: DocumentBody;
  readonly bodyBytes: Uint8Array;
  /** SHA-256 of the body bytes (the next document's previous_digest). */
  readonly digest: Uint8Array;
  /** Authority keys whose signatures verified. */
  readonly signers: readonly Uint8Array[];
}

/**
 * Verifies a SignedDocument: size, encoding, at least `threshold` valid signatures from distinct
 * configured authorities, epoch and validity window, parameters, and internal consistency
 * (node id = SHA-256(identity key), no duplicate node ids, identity keys, Sphinx keys or mail
 * domains, sorted lists). Throws PkiError with a typed reason.
 */
export function verifyDocument(bytes: Uint8Array, opts: VerifyOptions): VerifiedDocument {
  if (opts.threshold < 1 || opts.threshold > opts.authorities.length) throw new RangeError(`threshold must be 1..${opts.authorities.length}`);
  const signed = decodeSignedDocument(bytes);
  const configured = new Set(opts.authorities.map(hex));
  const good = new Map<string, Uint8Array>();
  let bad = 0;
  for (const s of signed.signatures) {
    const k = hex(s.authorityKey);
    if (!configured.has(k) || good.has(k)) continue;
    if (checkDocumentSignature(signed.body, s)) good.set(k, s.authorityKey);
    else bad++;
  }
  if (good.size < opts.threshold) {
    if (bad > 0) throw new PkiError('bad-signature', `${bad} authority signature(s) do not verify; ${good.size} valid < threshold ${opts.threshold}`);
    if (signed.signatures.length > 0 && good.size === 0) throw new PkiError('unknown-authority', 'no signature from a configured authority');
    throw new PkiError('threshold', `${good.size} valid signature(s) < threshold ${opts.threshold}`);
  }
  // only now, with the signatures good, parse the body in full
  const body = decodeDocumentBody(signed.body);
  if (opts.epoch !== undefined && body.epoch !== opts.epoch) throw new PkiError('wrong-epoch', `document is for epoch ${body.epoch}, expected ${opts.epoch}`);
  if (opts.now !== undefined) {
    if (opts.now >= body.validUntil + body.grace)
      throw new PkiError('expired', `document for epoch ${body.epoch} is over (its keys ended with epoch ${lastKeyEpoch(body)})`);
    if (opts.now < body.validAfter - body.epochLength) throw new PkiError('future-epoch', `document for epoch ${body.epoch} is more than one epoch ahead`);
  }
  checkDocumentConsistency(body);
  return { bytes, body, bodyBytes: signed.body, digest: sha256(signed.body), signers: [...good.values()] };
}

function checkDocumentConsistency(body: DocumentBody): void {
  try {
    validateGeometry(body.geometry);
    validateMixingParams(body.mixing);
  } catch (e) {
    throw new PkiError('invalid-field', (e as Error).message);
  }
  const ids = new Set<string>();
  const idKeys = new Set<string>();
  const sphinx = new Set<string>();
  const domains = new Set<string>();
  const all: NodeEntry[] = [...body.layers.flat(), ...body.gateways];
  for (const n of all) {
    if (!bytesEqual(n.nodeId, sha256(n.identityKey))) throw new PkiError('invalid-field', 'node id is not SHA-256 of the identity key');
    for (const [set, v, what] of [
      [ids, hex(n.nodeId), 'node id'],
      [idKeys, hex(n.identityKey), 'identity key'],
      // every listed key, of every epoch: one key in two places would merge their replay sets
      ...[n.sphinxKey, ...n.sphinxKeysAhead].map((k) => [sphinx, hex(k), 'Sphinx key'] as const),
    ] as const) {
      if (set.has(v)) throw new PkiError('duplicate-key', `duplicate ${what} ${v.slice(0, 16)}`);
      set.add(v);
    }
    for (const d of n.gateway?.domains ?? []) {
      if (domains.has(d)) throw new PkiError('duplicate-key', `mail domain ${d} is served by two gateways`);
      domains.add(d);
    }
  }
  const isSorted = (l: readonly NodeEntry[]) => l.every((n, i) => i === 0 || compareBytes(l[i - 1]!.nodeId, n.nodeId) < 0);
  if (!body.layers.every(isSorted) || !isSorted(body.gateways)) throw new PkiError('non-canonical', 'node lists must be sorted by node id');
  const auth = body.authorities;
  if (!auth.every((a, i) => i === 0 || compareBytes(auth[i - 1]!, a) < 0)) throw new PkiError('non-canonical', 'authorities must be sorted and distinct');
}

/** Encodes a body and checks it decodes (used by authorities before signing). */
export function encodeCheckedDocumentBody(body: DocumentBody): Uint8Array {
  const sortedBody: DocumentBody = {
    ...body,
    layers: body.layers.map((l) => [...l].sort((a, b) => compareBytes(a.nodeId, b.nodeId))),
    gateways: [...body.gateways].sort((a, b) => compareBytes(a.nodeId, b.nodeId)),
  };
  const bytes = encodeDocumentBody(sortedBody);
  decodeDocumentBody(bytes);
  return bytes;
}

/** Convenience for roles: the gateway serving a mail domain, if any. */
export function gatewayForDomain(body: DocumentBody, domain: string): NodeEntry | undefined {
  const d = domain.toLowerCase();
  return body.gateways.find((g) => g.gateway?.domains.includes(d));
}

/** Convenience for roles: a node (mix or gateway) by id. */
export function findNode(body: DocumentBody, nodeId: Uint8Array): NodeEntry | undefined {
  for (const l of body.layers) for (const n of l) if (bytesEqual(n.nodeId, nodeId)) return n;
  return body.gateways.find((g) => bytesEqual(g.nodeId, nodeId));
}

export { decodeSignedDocument };
