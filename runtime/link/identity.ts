/**
 * libp2p identity from a 32-byte seed. The node's libp2p Ed25519 key is derived
 * deterministically from a seed (RFC 8032: the seed *is* the Ed25519 private key), so the PKI
 * can bind the libp2p peer id to the node's identity key: a node that uses its identity seed
 * here has a peer id that anyone can compute from its Ed25519 public key
 * (`peerIdFromEd25519PublicKey`). Every postmix node must do so: the directory authorities
 * refuse a descriptor whose peer id is not the one derived from its identity key
 * (docs/spec/pki.md), so a peer id cannot be claimed by a node that does not hold the key.
 */
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys';
import type { Ed25519PrivateKey, PeerId } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromPublicKey } from '@libp2p/peer-id';

export async function privateKeyFromSeed(seed: Uint8Array): Promise<Ed25519PrivateKey> {
  if (seed.length !== 32) throw new RangeError(`libp2p identity seed must be 32 bytes, got ${seed.length}`);
  return generateKeyPairFromSeed('Ed25519', seed);
}

export async function peerIdFromSeed(seed: Uint8Array): Promise<PeerId> {
  return peerIdFromPrivateKey(await privateKeyFromSeed(seed));
}

/** The peer id of the node whose raw 32-byte Ed25519 public key is `pub`. */
export function peerIdFromEd25519PublicKey(pub: Uint8Array): PeerId {
  if (pub.length !== 32) throw new RangeError(`Ed25519 public key must be 32 bytes, got ${pub.length}`);
  const key = publicKeyFromRaw(pub);
  if (key.type !== 'Ed25519') throw new RangeError('not an Ed25519 key');
  return peerIdFromPublicKey(key);
}
