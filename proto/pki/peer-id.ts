/**
 * The peer id rule (docs/spec/pki.md §2): a node uses its identity seed as its libp2p Ed25519
 * key, so its libp2p peer id follows from its identity public key and anyone can check it.
 * libp2p's peer id of an Ed25519 key is the identity multihash (code 0x00, length 36) of the
 * protobuf PublicKey { Type = Ed25519 (1), Data = the 32-byte key }, written in base58btc
 * without a multibase prefix ("12D3KooW…"). runtime/link/link.test.ts checks it against libp2p's
 * own derivation.
 */
import { base58btc } from 'multiformats/bases/base58';
import { ED25519_PUBLIC_KEY_LENGTH } from './keys.ts';
import { PkiError } from './errors.ts';

// identity multihash (0x00, 36 bytes) of: field 1 varint Ed25519 (0x08 0x01), field 2 bytes (0x12 0x20)
const PREFIX = Uint8Array.of(0x00, 0x24, 0x08, 0x01, 0x12, 0x20);

/** The libp2p peer id (string form) of the node whose Ed25519 identity public key is `pub`. */
export function peerIdOfIdentityKey(pub: Uint8Array): string {
  if (pub.length !== ED25519_PUBLIC_KEY_LENGTH) throw new PkiError('bad-key', `identity key must be 32 bytes, got ${pub.length}`);
  const b = new Uint8Array(PREFIX.length + pub.length);
  b.set(PREFIX);
  b.set(pub, PREFIX.length);
  return base58btc.baseEncode(b);
}
