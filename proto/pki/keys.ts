/**
 * Node keys (docs/spec/pki.md §2): a long-term Ed25519 identity key, and one X25519 Sphinx key
 * per epoch. Node id = SHA-256(identity public key), 32 bytes.
 *
 * Ed25519 signing and verification go through node:crypto (several times faster than a pure JS
 * implementation, which matters when an authority verifies every descriptor of a vote); X25519
 * key generation uses @noble/curves, the same implementation the Sphinx layer uses.
 *
 * Key files are small JSON documents (formats here; runtime/pki/key-store.ts reads and writes
 * them, private ones with mode 0600).
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { PkiError } from './errors.ts';
import { hex } from '../util/bytes.ts';

export const ED25519_PUBLIC_KEY_LENGTH = 32;
export const ED25519_SEED_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;
export const X25519_KEY_LENGTH = 32;
export const NODE_ID_LENGTH = 32;

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface IdentityKey {
  /** 32-byte Ed25519 seed (RFC 8032 private key). */
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  /** SHA-256(publicKey). */
  readonly nodeId: Uint8Array;
  /** Cached node:crypto key object. */
  readonly privateKeyObject: KeyObject;
}

export interface SphinxKeyPair {
  readonly epoch: number;
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

export function nodeIdOf(identityPublicKey: Uint8Array): Uint8Array {
  if (identityPublicKey.length !== ED25519_PUBLIC_KEY_LENGTH) throw new PkiError('bad-key', `identity key must be 32 bytes, got ${identityPublicKey.length}`);
  return sha256(identityPublicKey);
}

export function identityFromSeed(seed: Uint8Array): IdentityKey {
  if (seed.length !== ED25519_SEED_LENGTH) throw new PkiError('bad-key', `Ed25519 seed must be 32 bytes, got ${seed.length}`);
  const privateKeyObject = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKeyObject).export({ format: 'der', type: 'spki' });
  const publicKey = new Uint8Array(spki.subarray(spki.length - 32));
  return { seed: new Uint8Array(seed), publicKey, nodeId: sha256(publicKey), privateKeyObject };
}

export function generateIdentity(): IdentityKey {
  return identityFromSeed(new Uint8Array(randomBytes(32)));
}

export function ed25519Sign(identity: IdentityKey, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, identity.privateKeyObject));
}

const publicKeyCache = new Map<string, KeyObject | null>();

function publicKeyObject(pub: Uint8Array): KeyObject | null {
  const k = hex(pub);
  const hit = publicKeyCache.get(k);
  if (hit !== undefined) return hit;
  let obj: KeyObject | null = null;
  try {
    obj = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, pub]), format: 'der', type: 'spki' });
  } catch {
    obj = null;
  }
  if (publicKeyCache.size > 4096) publicKeyCache.clear();
  publicKeyCache.set(k, obj);
  return obj;
}

/** Verifies an Ed25519 signature; never throws (bad keys and lengths are simply false). */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH || signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  const key = publicKeyObject(publicKey);
  if (!key) return false;
  try {
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

export function generateSphinxKey(epoch: number): SphinxKeyPair {
  const secretKey = x25519.utils.randomSecretKey();
  return { epoch, secretKey, publicKey: x25519.getPublicKey(secretKey) };
}

export function sphinxKeyFromSecret(epoch: number, secretKey: Uint8Array): SphinxKeyPair {
  if (secretKey.length !== X25519_KEY_LENGTH) throw new PkiError('bad-key', `X25519 secret must be 32 bytes`);
  return { epoch, secretKey: new Uint8Array(secretKey), publicKey: x25519.getPublicKey(secretKey) };
}

// ---------------------------------------------------------------------------------------------
// Key files (the format; reading and writing them is runtime/pki/key-store.ts)

export const IDENTITY_FILE = 'identity.key';
export const IDENTITY_PUBLIC_FILE = 'identity.pub';
export const sphinxKeyFile = (epoch: number): string => `sphinx-${epoch}.key`;
/** Matches a Sphinx key file name; group 1 is the epoch. */
export const SPHINX_KEY_FILE_RE = /^sphinx-(\d+)\.key$/;

interface KeyFileJson {
  readonly type: string;
  readonly version: 1;
  readonly [k: string]: unknown;
}

function b64(u: Uint8Array): string {
  return Buffer.from(u).toString('base64');
}

function unb64(s: unknown, len: number, what: string): Uint8Array {
  if (typeof s !== 'string') throw new PkiError('invalid-field', `${what}: missing`);
  const b = Buffer.from(s, 'base64');
  if (b.length !== len) throw new PkiError('bad-key', `${what}: expected ${len} bytes, got ${b.length}`);
  return new Uint8Array(b);
}

/** Thrown for a key file that cannot be read at all (`source` is its path). */
export function unreadableKeyFile(source: string, cause: string): PkiError {
  return new PkiError('malformed', `${source}: not a postmix key file (${cause})`);
}

function parseJson(text: string, source: string): KeyFileJson {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw unreadableKeyFile(source, (e as Error).message);
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as KeyFileJson).version !== 1)
    throw new PkiError('wrong-version', `${source}: not a version 1 postmix key file`);
  return parsed as KeyFileJson;
}

export function identityFileContent(id: IdentityKey): string {
  return (
    JSON.stringify({ type: 'postmix-ed25519-identity', version: 1, seed: b64(id.seed), publicKey: b64(id.publicKey), nodeId: hex(id.nodeId) }, null, 2) + '\n'
  );
}

export function identityPublicFileContent(id: IdentityKey): string {
  return JSON.stringify({ type: 'postmix-ed25519-identity-public', version: 1, publicKey: b64(id.publicKey), nodeId: hex(id.nodeId) }, null, 2) + '\n';
}

export function sphinxFileContent(k: SphinxKeyPair): string {
  return (
    JSON.stringify({ type: 'postmix-x25519-sphinx', version: 1, epoch: k.epoch, secretKey: b64(k.secretKey), publicKey: b64(k.publicKey) }, null, 2) + '\n'
  );
}

/** An identity.key file's text; `source` names it in errors. Throws PkiError. */
export function parseIdentityFile(text: string, source: string): IdentityKey {
  const j = parseJson(text, source);
  if (j.type !== 'postmix-ed25519-identity') throw new PkiError('invalid-field', `${source}: type is ${String(j.type)}, expected postmix-ed25519-identity`);
  const id = identityFromSeed(unb64(j.seed, 32, `${source} seed`));
  if (j.publicKey !== undefined && b64(id.publicKey) !== j.publicKey) throw new PkiError('bad-key', `${source}: publicKey does not match the seed`);
  return id;
}

/** The public key of an identity.pub or a full identity.key file's text. Throws PkiError. */
export function parseIdentityPublicKey(text: string, source: string): Uint8Array {
  const j = parseJson(text, source);
  if (j.type !== 'postmix-ed25519-identity-public' && j.type !== 'postmix-ed25519-identity')
    throw new PkiError('invalid-field', `${source}: not an identity key file`);
  return unb64(j.publicKey, 32, `${source} publicKey`);
}

/** A sphinx-<epoch>.key file's text. Throws PkiError. */
export function parseSphinxKeyFile(text: string, source: string): SphinxKeyPair {
  const j = parseJson(text, source);
  if (j.type !== 'postmix-x25519-sphinx') throw new PkiError('invalid-field', `${source}: not a Sphinx key file`);
  if (typeof j.epoch !== 'number' || !Number.isInteger(j.epoch) || j.epoch < 0 || j.epoch > 0xffffffff)
    throw new PkiError('invalid-field', `${source}: epoch must be a uint32`);
  const k = sphinxKeyFromSecret(j.epoch, unb64(j.secretKey, 32, `${source} secretKey`));
  if (j.publicKey !== undefined && b64(k.publicKey) !== j.publicKey) throw new PkiError('bad-key', `${source}: publicKey does not match the secret key`);
  return k;
}

export { bytesEqual, compareBytes, hex } from '../util/bytes.ts';
