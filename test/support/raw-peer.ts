/**
 * An attacker's libp2p node for adversary tests: TCP + Noise + yamux like any postmix peer, but
 * with no PacketLink in the way, so it can open any protocol, write any bytes (wrong sizes, bad
 * length prefixes) and open as many streams as it likes. With a seed it has that seed's peer id
 * (as the node holding the key would).
 */
import { randomBytes } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import type { Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { privateKeyFromSeed } from '../../runtime/link/identity.ts';

export class RawPeer {
  private constructor(private readonly node: Libp2p) {}

  static async create(seed: Uint8Array = new Uint8Array(randomBytes(32))): Promise<RawPeer> {
    const node = await createLibp2p({
      privateKey: await privateKeyFromSeed(seed),
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionMonitor: { enabled: false },
    });
    return new RawPeer(node);
  }

  /** A stream of `protocol` to the node listening at `addrs`. */
  dialProtocol(addrs: readonly Multiaddr[], protocol: string): Promise<Stream> {
    return this.node.dialProtocol([...addrs], protocol);
  }

  /** A bare connection to the node listening at `addrs` (to open many streams on it). */
  dial(addrs: readonly Multiaddr[]): Promise<Connection> {
    return this.node.dial([...addrs]);
  }

  async stop(): Promise<void> {
    await this.node.stop();
  }
}
