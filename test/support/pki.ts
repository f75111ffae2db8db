/** PKI objects for tests and benchmarks: nodes with real keys and signed descriptors, document bodies. */
import { peerIdOfIdentityKey } from '../../proto/pki/peer-id.ts';
import { DEFAULT_GEOMETRY } from '../../proto/sphinx/geometry.ts';
import { decodeDescriptorBody, decodeSignedDescriptor, encodeDescriptorBody, encodeSignedDescriptor } from '../../proto/pki/codec.ts';
import type { DescriptorBody, DocumentBody, GatewayInfo, NodeEntry, Role } from '../../proto/pki/codec.ts';
import { buildDescriptor } from '../../proto/pki/descriptor.ts';
import { ed25519Sign, generateIdentity, generateSphinxKey, type IdentityKey, type SphinxKeyPair } from '../../proto/pki/keys.ts';
import { descriptorSigningBytes } from '../../proto/pki/signing.ts';
import { MAX_KEYS_AHEAD } from '../../proto/pki/epoch.ts';

export interface TestNode {
  readonly identity: IdentityKey;
  readonly role: Role;
  readonly keys: SphinxKeyPair[];
  readonly descriptor: Uint8Array;
}

export function testNode(
  epoch: number,
  i: number,
  role: Role,
  extra: { gateway?: GatewayInfo; layerPreference?: number; publishedAt?: number; keysAhead?: number } = {},
): TestNode {
  const identity = generateIdentity();
  // as a node's epoch driver publishes them: its epoch's key and MAX_KEYS_AHEAD more
  const keys = Array.from({ length: 1 + (extra.keysAhead ?? MAX_KEYS_AHEAD) }, (_, j) => generateSphinxKey(epoch + j));
  const gateway: GatewayInfo | undefined =
    role === 'gateway'
      ? (extra.gateway ?? {
          domains: [`mail${i}.example`],
          issuerKeys: [{ keyEpoch: 1, publicKey: new Uint8Array(33).fill(i & 0xff) }],
          keyDirectoryUrl: '',
          policy: 'token-required',
        })
      : undefined;
  const descriptor = buildDescriptor({
    identity,
    peerId: peerIdOfIdentityKey(identity.publicKey),
    addresses: [`/ip4/127.0.0.1/tcp/${20000 + i}`],
    role,
    layerPreference: extra.layerPreference ?? 0,
    epoch,
    sphinxKeys: keys,
    gateway,
    publishedAt: extra.publishedAt ?? 1_800_000_000,
  });
  return { identity, role, keys, descriptor };
}

/**
 * The node's descriptor with some fields changed, validly signed by the node itself, past the
 * checks `buildDescriptor` makes: for testing what a verifier refuses.
 */
export function resignedDescriptor(n: TestNode, patch: Partial<DescriptorBody>): Uint8Array {
  const body = encodeDescriptorBody({ ...decodeDescriptorBody(decodeSignedDescriptor(n.descriptor).body), ...patch });
  return encodeSignedDescriptor({ body, signature: ed25519Sign(n.identity, descriptorSigningBytes(body)) });
}

function testEntry(layer: number, i: number, epoch: number, keysAhead: number): NodeEntry {
  const id = generateIdentity();
  return {
    nodeId: id.nodeId,
    identityKey: id.publicKey,
    peerId: peerIdOfIdentityKey(id.publicKey),
    addresses: [`/ip4/127.0.0.1/tcp/${4000 + i}`],
    sphinxKey: generateSphinxKey(epoch).publicKey,
    sphinxKeysAhead: Array.from({ length: keysAhead }, (_, j) => generateSphinxKey(epoch + 1 + j).publicKey),
    layer,
  };
}

/**
 * An unsigned document body with `layers[l]` mixes in layer l + 1: for `epoch` (default 1) of an
 * epoch schedule with origin 0 and length 100 s, with `keysAhead` (default 0) keys ahead.
 */
export function testDocumentBody(
  layers: readonly number[],
  o: { gateways?: number; maxHops?: number; lambdaM?: number; epoch?: number; keysAhead?: number } = {},
): DocumentBody {
  let i = 0;
  const epoch = o.epoch ?? 1;
  const ahead = o.keysAhead ?? 0;
  return {
    version: 1,
    epoch,
    validAfter: epoch * 100,
    freshUntil: (epoch + 1) * 100,
    validUntil: (epoch + 1 + ahead) * 100,
    epochLength: 100,
    grace: 10,
    geometry: { ...DEFAULT_GEOMETRY, maxHops: o.maxHops ?? 5 },
    mixing: { lambdaP: 1, lambdaL: 1, lambdaD: 1, lambdaM: o.lambdaM ?? 1, lambdaG: 1, mu: 10 },
    layers: layers.map((n, l) => Array.from({ length: n }, () => testEntry(l + 1, i++, epoch, ahead))),
    gateways: Array.from({ length: o.gateways ?? 1 }, () => testEntry(0, i++, epoch, ahead)),
    authorities: [],
    threshold: 1,
    previousDigest: new Uint8Array(0),
  };
}
