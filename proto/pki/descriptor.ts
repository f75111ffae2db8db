/**
 * Node descriptors: what a mix or gateway uploads to every authority for an epoch
 * (docs/spec/pki.md §3.1). Build one with `buildDescriptor`, check one with `verifyDescriptor`.
 */
import { peerIdOfIdentityKey } from './peer-id.ts';
import { encodeDescriptorBody, encodeSignedDescriptor, decodeDescriptorBody, decodeSignedDescriptor, PKI_VERSION } from './codec.ts';
import type { DescriptorBody, GatewayInfo, Role, SignedDescriptor } from './codec.ts';
import { PkiError } from './errors.ts';
import { ed25519Sign, ed25519Verify, sha256, type IdentityKey, type SphinxKeyPair } from './keys.ts';
import { descriptorSigningBytes, sphinxKeySigningBytes } from './signing.ts';

export interface DescriptorInput {
  readonly identity: IdentityKey;
  readonly peerId: string;
  readonly addresses: readonly string[];
  readonly role: Role;
  readonly layerPreference?: number;
  /** The epoch the descriptor is for. */
  readonly epoch: number;
  /** Sphinx keys for `epoch` and (recommended) `epoch + 1`. */
  readonly sphinxKeys: readonly SphinxKeyPair[];
  readonly gateway?: GatewayInfo;
  /** Unix seconds; defaults to now. */
  readonly publishedAt?: number;
}

/** Builds, signs and encodes a descriptor (SignedDescriptor bytes, ready to upload). */
export function buildDescriptor(input: DescriptorInput): Uint8Array {
  const id = input.identity;
  const body: DescriptorBody = {
    version: PKI_VERSION,
    identityKey: id.publicKey,
    peerId: input.peerId,
    addresses: input.addresses,
    role: input.role,
    layerPreference: input.layerPreference ?? 0,
    epoch: input.epoch,
    sphinxKeys: [...input.sphinxKeys]
      .sort((a, b) => a.epoch - b.epoch)
      .map((k) => ({
        epoch: k.epoch,
        publicKey: k.publicKey,
        signature: ed25519Sign(id, sphinxKeySigningBytes(id.nodeId, k.epoch, k.publicKey)),
      })),
    gateway: input.gateway,
    publishedAt: input.publishedAt ?? Math.floor(Date.now() / 1000),
  };
  const bodyBytes = encodeDescriptorBody(body);
  // round-trip through the decoder so we never sign something the authorities will refuse
  checkPeerId(decodeDescriptorBody(bodyBytes));
  return encodeSignedDescriptor({ body: bodyBytes, signature: ed25519Sign(id, descriptorSigningBytes(bodyBytes)) });
}

/**
 * The peer id must be the one of the identity key used as the libp2p key (peer-id.ts).
 * Otherwise anyone could publish a victim's peer id under their own identity: the network would
 * send the node's packets to the victim's libp2p endpoint, and a peer that connects as the
 * victim would be admitted as the node. Throws PkiError (`invalid-field`).
 */
export function checkPeerId(body: DescriptorBody): void {
  const want = peerIdOfIdentityKey(body.identityKey);
  if (body.peerId !== want)
    throw new PkiError(
      'invalid-field',
      `peer id ${body.peerId} is not the one derived from the identity key (${want}); the node must use its identity seed as its libp2p key`,
    );
}

export interface VerifiedDescriptor {
  readonly bytes: Uint8Array;
  readonly signed: SignedDescriptor;
  readonly body: DescriptorBody;
  readonly nodeId: Uint8Array;
  /** SHA-256 of the SignedDescriptor bytes: equal digests mean the identical upload. */
  readonly digest: Uint8Array;
}

/**
 * Decodes and checks a SignedDescriptor: encoding, fields, the identity signature over the
 * body, each Sphinx key's signature, and that the peer id is the identity key's. Epoch freshness is the caller's business (it needs a
 * clock). Throws PkiError.
 */
export function verifyDescriptor(bytes: Uint8Array): VerifiedDescriptor {
  const signed = decodeSignedDescriptor(bytes);
  const body = decodeDescriptorBody(signed.body);
  if (!ed25519Verify(body.identityKey, descriptorSigningBytes(signed.body), signed.signature))
    throw new PkiError('bad-signature', 'descriptor signature does not verify under its identity key');
  const nodeId = sha256(body.identityKey);
  for (const k of body.sphinxKeys) {
    if (!ed25519Verify(body.identityKey, sphinxKeySigningBytes(nodeId, k.epoch, k.publicKey), k.signature))
      throw new PkiError('bad-signature', `Sphinx key for epoch ${k.epoch} is not signed by the identity key`);
  }
  checkPeerId(body);
  return { bytes, signed, body, nodeId, digest: sha256(bytes) };
}

/** The descriptor's Sphinx public key for an epoch, if it carries one. */
export function sphinxKeyFor(body: DescriptorBody, epoch: number): Uint8Array | undefined {
  return body.sphinxKeys.find((k) => k.epoch === epoch)?.publicKey;
}
