/**
 * Test and benchmark helpers: fake nodes with real keys. Not used by daemons.
 */
import type { GatewayInfo, Role } from './codec.ts';
import { buildDescriptor } from './descriptor.ts';
import { generateIdentity, generateSphinxKey, hex, type IdentityKey, type SphinxKeyPair } from './keys.ts';

export interface FakeNode {
  readonly identity: IdentityKey;
  readonly role: Role;
  readonly keys: SphinxKeyPair[];
  readonly descriptor: Uint8Array;
}

export function fakeNode(epoch: number, i: number, role: Role, extra: { gateway?: GatewayInfo; layerPreference?: number; publishedAt?: number } = {}): FakeNode {
  const identity = generateIdentity();
  const keys = [generateSphinxKey(epoch), generateSphinxKey(epoch + 1)];
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
    // a stand-in: real nodes publish their libp2p peer id (proto/link/identity.ts)
    peerId: `peer-${hex(identity.nodeId).slice(0, 32)}`,
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
