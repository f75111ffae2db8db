/**
 * The packet link: fixed-size Sphinx frames between postmix daemons over libp2p
 * (TCP + Noise + yamux), protocol `/postmix/sphinx/1`. Shared by the mix node, the gateway and
 * the client. Wire format and limits: docs/spec/link.md.
 *
 * Other protocols between the same peers (the mailbox) run on the same connections, through
 * `handle(protocol)` and `dial(protocol)`: streams of length-prefixed frames of one size, under
 * the same admission rules and in the same capture. No caller touches libp2p itself.
 *
 * - Outbound: one stream per neighbour, reused; a bounded queue per neighbour; queued frames
 *   are written in batches (up to `maxBatchFrames` per stream write).
 * - Inbound: frames of the wrong size are skipped and counted; a handler that returns a
 *   promise applies backpressure (the stream is paused while too many are pending, and yamux
 *   flow control then stops the peer).
 * - A connection gater admits only peers the caller's predicate allows (the current network
 *   document), plus any inbound peer when `allowUnknownInbound` is set (layer-1 mixes,
 *   gateways taking client traffic).
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream';
import type { Connection, Libp2p, PeerId, PrivateKey, Stream, StreamMessageEvent } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { encodeFrame, encodeFrames, FrameDecoder, FramingError } from '../../proto/link/framing.ts';
import { CAPTURE_ENV, LinkCapture } from './capture.ts';
import { PortInUseError } from '../errors.ts';
import { privateKeyFromSeed } from './identity.ts';
import { linkNoiseCrypto } from './noise-crypto.ts';

export const SPHINX_PROTOCOL = '/postmix/sphinx/1';

/** Largest yamux receive window per stream (yamux's own default is 16 MiB). */
export const STREAM_WINDOW_BYTES = 1024 * 1024;

/** The subset of a pino logger the link uses (pino loggers fit as they are). */
export interface LinkLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const silentLogger: LinkLogger = { debug() {}, info() {}, warn() {} };

/** Called for every frame received; a returned promise counts as "still processing". */
export type FrameHandler = (frame: Uint8Array, from: PeerId) => void | Promise<void>;

/** Sees every frame that crosses the link (after the size check on the way in). */
export type FrameObserver = (direction: 'in' | 'out', frame: Uint8Array, peer: PeerId) => void;

export interface PacketLinkOptions {
  /** 32-byte seed of the libp2p Ed25519 key (see identity.ts), or a libp2p private key. */
  readonly identity: Uint8Array | PrivateKey;
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. Empty: dial-only (a client). */
  readonly listen: readonly string[];
  /** Size of every frame on this network (the Sphinx packet size of the network document). */
  readonly packetSize: number;
  readonly onFrame: FrameHandler;
  /**
   * `onFrame` gets views into the link's receive buffer instead of copies (FrameDecoderOptions
   * `views`): for a handler that is done with each frame when it returns, or when its promise
   * settles, and copies anything it keeps; a frame kept as it is holds its whole Noise message
   * (up to 64 KiB). Saves an allocation and a copy per frame, and with them much of the
   * ArrayBuffer churn that drives V8's full collections under load. Default false (copies).
   */
  readonly viewFrames?: boolean;
  /** May this peer connect (either way)? Typically: is it in the current network document. */
  readonly isAllowedPeer: (peer: PeerId) => boolean;
  /**
   * Admit inbound connections from peers `isAllowedPeer` rejects (clients of a layer-1 mix or a
   * gateway). A function is asked at each new connection and stream (it may change per epoch).
   */
  readonly allowUnknownInbound?: boolean | (() => boolean);
  /** Where to dial a peer (from the network document). Needed for `send` to a new peer. */
  readonly addressesOf?: (peer: PeerId) => readonly Multiaddr[] | undefined;
  /** Frames queued per neighbour before new ones are dropped. Default 4096. */
  readonly maxQueuedFramesPerPeer?: number;
  /** Frames per stream write when frames are queued. Default 32. */
  readonly maxBatchFrames?: number;
  /** Inbound `/postmix/sphinx/1` streams per connection. Default 2. */
  readonly maxInboundStreamsPerConnection?: number;
  /** Muxed streams (any protocol) a peer may open on one connection. Default 16. */
  readonly maxMuxedStreamsPerConnection?: number;
  /** Pending (unsettled) handler promises per inbound stream before the stream is paused. Default 256. */
  readonly maxPendingPerStream?: number;
  /** After a failed dial, frames to that neighbour are dropped (counted) for this long. Default 1000 ms. */
  readonly redialBackoffMs?: number;
  /** Total connections. Default 1024. */
  readonly maxConnections?: number;
  readonly observe?: FrameObserver;
  readonly logger?: LinkLogger;
}

/**
 * One stream of another protocol (`handle` / `dial`): length-prefixed frames both ways. Inbound
 * frames have one size, `frameSize()`, read at each frame (it may follow the geometry); one of
 * another size ends the stream, as does a bad length prefix.
 */
export interface FrameStream {
  readonly protocol: string;
  readonly peer: PeerId;
  /** Writes one frame; false when the stream is no longer open (nothing was written). */
  send(frame: Uint8Array): boolean;
  /** Ends the stream (both directions) at once. */
  abort(reason: string): void;
  /** Settles when the stream has ended, either side; never rejects. */
  readonly ended: Promise<void>;
}

/** What the owner of a stream does with what arrives on it. */
export interface FrameStreamHandlers {
  /** The size of every inbound frame. */
  readonly frameSize: () => number;
  readonly onFrame: (frame: Uint8Array) => void;
}

export interface ProtocolOptions {
  /** Inbound streams of this protocol per connection. Default 4. */
  readonly maxInboundStreams?: number;
  /** Outbound streams of this protocol per connection. Default 4. */
  readonly maxOutboundStreams?: number;
}

/** Plain counters; the daemon exports them (e.g. as Prometheus counters). */
export interface LinkCounters {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Inbound frames whose declared length was not the packet size (skipped). */
  droppedWrongSizeIn: number;
  /** `send` called with a frame of the wrong size (a local bug; never put on the wire). */
  droppedWrongSizeOut: number;
  /** Outbound frames dropped because the neighbour's queue was full. */
  droppedQueueFull: number;
  /** Outbound frames dropped because the neighbour could not be dialled or the stream failed. */
  droppedUnreachable: number;
  /** Inbound streams aborted for an invalid length prefix. */
  streamsAbortedBadPrefix: number;
  /** Inbound streams (any protocol) refused because the peer is not (or no longer) allowed. */
  streamsRefused: number;
  /** Streams of other protocols ended for a frame of the wrong size or a bad length prefix. */
  streamsAbortedBadFrame: number;
  /** Connections refused by the gater. */
  connectionsDenied: number;
  /** Times an inbound stream was paused for backpressure. */
  inboundPauses: number;
  dials: number;
  dialFailures: number;
  /** Dials answered by another peer than the one dialled (refused; see `openTo`). */
  wrongPeer: number;
}

function newCounters(): LinkCounters {
  return {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    droppedWrongSizeIn: 0,
    droppedWrongSizeOut: 0,
    droppedQueueFull: 0,
    droppedUnreachable: 0,
    streamsAbortedBadPrefix: 0,
    streamsRefused: 0,
    streamsAbortedBadFrame: 0,
    connectionsDenied: 0,
    inboundPauses: 0,
    dials: 0,
    dialFailures: 0,
    wrongPeer: 0,
  };
}

/** Outbound state for one neighbour. */
class Outbound {
  queue: Uint8Array[] = [];
  head = 0;
  stream: Stream | null = null;
  running = false;
  /** performance.now() before which we do not dial again after a failure. */
  downUntil = 0;
  waiters: Array<() => void> = [];
  constructor(readonly peer: PeerId) {}
  get length(): number {
    return this.queue.length - this.head;
  }
  take(n: number): Uint8Array[] {
    const end = Math.min(this.queue.length, this.head + n);
    const out = this.queue.slice(this.head, end);
    this.head = end;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return out;
  }
  clear(): number {
    const n = this.length;
    this.queue = [];
    this.head = 0;
    return n;
  }
  settle(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export class PacketLink {
  readonly counters: LinkCounters = newCounters();
  private readonly opts: PacketLinkOptions;
  private readonly log: LinkLogger;
  private packetSize: number;
  private readonly maxQueue: number;
  private readonly maxBatch: number;
  private readonly maxPending: number;
  private readonly outbound = new Map<string, Outbound>();
  private readonly inboundStreams = new Set<Stream>();
  private node: Libp2p | null = null;
  private stopping = false;
  /** Set only when POSTMIX_LINK_CAPTURE asks for a capture (tests, diagnostics). */
  private capture: LinkCapture | undefined;

  private constructor(opts: PacketLinkOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
    this.packetSize = opts.packetSize;
    this.maxQueue = opts.maxQueuedFramesPerPeer ?? 4096;
    this.maxBatch = opts.maxBatchFrames ?? 32;
    this.maxPending = opts.maxPendingPerStream ?? 256;
    if (!Number.isInteger(this.packetSize) || this.packetSize <= 0) throw new RangeError('packetSize must be a positive integer');
    if (this.maxBatch < 1 || this.maxQueue < 1) throw new RangeError('maxBatchFrames and maxQueuedFramesPerPeer must be >= 1');
  }

  /** Creates and starts a link (listening when `listen` is non-empty). */
  static async create(opts: PacketLinkOptions): Promise<PacketLink> {
    const link = new PacketLink(opts);
    await link.start();
    return link;
  }

  private async start(): Promise<void> {
    const o = this.opts;
    const privateKey = o.identity instanceof Uint8Array ? await privateKeyFromSeed(o.identity) : o.identity;
    const deny = (peer: PeerId, inbound: boolean): boolean => {
      const ok = this.admits(peer, inbound);
      if (!ok) {
        this.counters.connectionsDenied++;
        this.log.debug({ peer: peer.toString(), inbound }, 'link: connection denied by gater');
      }
      return !ok;
    };
    const maxStreams = o.maxMuxedStreamsPerConnection ?? 16;
    const noiseCrypto = linkNoiseCrypto();
    if (noiseCrypto.fallbackReason) this.log.warn({}, `link: ${noiseCrypto.fallbackReason}`);
    this.node = await createLibp2p({
      privateKey,
      addresses: { listen: [...o.listen] },
      transports: [tcp()],
      connectionEncrypters: [noise({ crypto: noiseCrypto.crypto })],
      streamMuxers: [
        yamux({
          maxInboundStreams: maxStreams,
          maxEarlyStreams: maxStreams,
          streamOptions: {
            // A frame stream may be idle between bursts; keep it (yamux keep-alive pings the connection).
            inactivityTimeout: 0,
            // Flow control bounds what a peer can have in flight per stream: a paused stream
            // (backpressure) buffers at most one window; more than the read limit resets it.
            maxStreamWindowSize: STREAM_WINDOW_BYTES,
            maxReadBufferLength: 2 * STREAM_WINDOW_BYTES,
          },
        }),
      ],
      connectionManager: { maxConnections: o.maxConnections ?? 1024 },
      connectionMonitor: { enabled: false },
      connectionGater: {
        denyDialMultiaddr: () => false,
        denyDialPeer: (peer) => deny(peer, false),
        denyOutboundEncryptedConnection: (peer) => deny(peer, false),
        denyInboundEncryptedConnection: (peer) => deny(peer, true),
      },
      start: false,
    });
    await this.node.handle(SPHINX_PROTOCOL, (stream, conn) => this.onInboundStream(stream, conn), {
      maxInboundStreams: o.maxInboundStreamsPerConnection ?? 2,
      maxOutboundStreams: 2,
    });
    try {
      await this.node.start();
    } catch (e) {
      try {
        await this.node.stop();
      } catch {
        /* it did not start: nothing to stop */
      }
      this.node = null;
      // libp2p reports a listen address it could not bind (in use, not local) as this error
      if ((e as Error).name === 'UnsupportedListenAddressesError')
        throw new PortInUseError(
          `cannot listen on ${o.listen.join(', ')}: ${
            (e as Error).message
              .split('\n')
              .slice(1)
              .join(' ')
              .trim()
              .split(/\s+at\s/)[0]
          }`,
        );
      throw e;
    }
    this.capture = LinkCapture.fromEnv(this.node.peerId.toString());
    if (this.capture) this.log.warn({ dir: process.env[CAPTURE_ENV] }, 'link: capturing frames (test/diagnostic mode; never on a production node)');
    this.log.info({ peer: this.node.peerId.toString(), addrs: this.multiaddrs().map(String) }, 'link: started');
  }

  /** The admission rule for connections and streams: the caller's predicate, plus unknown inbound peers when allowed. */
  private admits(peer: PeerId, inbound: boolean): boolean {
    if (this.stopping && inbound) return false;
    try {
      const unknownInbound = this.opts.allowUnknownInbound;
      if (inbound && (typeof unknownInbound === 'function' ? unknownInbound() : unknownInbound === true)) return true;
      return this.opts.isAllowedPeer(peer);
    } catch {
      return false;
    }
  }

  private get libp2p(): Libp2p {
    if (this.node === null) throw new Error('link not started');
    return this.node;
  }

  get peerId(): PeerId {
    return this.libp2p.peerId;
  }

  /** Listening addresses including `/p2p/<peer id>`. */
  multiaddrs(): Multiaddr[] {
    return this.libp2p.getMultiaddrs();
  }

  get currentPacketSize(): number {
    return this.packetSize;
  }

  /**
   * Changes the frame size (a new network document with another geometry). Inbound streams
   * check the new size from their next frame on; queued outbound frames of the old size are
   * dropped and counted.
   */
  setPacketSize(size: number): void {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError('packetSize must be a positive integer');
    if (size === this.packetSize) return;
    this.packetSize = size;
    for (const ob of this.outbound.values()) {
      this.counters.droppedWrongSizeOut += ob.clear();
      ob.settle();
    }
  }

  /**
   * Re-applies the gate to open connections (call after installing a new network document):
   * closes connections to peers `isAllowedPeer` no longer allows, except inbound ones when
   * `allowUnknownInbound` is set. Returns how many connections were closed.
   */
  async enforceAllowedPeers(): Promise<number> {
    const closing: Promise<void>[] = [];
    for (const conn of this.libp2p.getConnections()) {
      if (!this.admits(conn.remotePeer, conn.direction === 'inbound')) closing.push(conn.close().catch(() => conn.abort(new Error('peer no longer allowed'))));
    }
    await Promise.all(closing);
    return closing.length;
  }

  /** Frames waiting in the queue to `peer`. */
  waiting(peer: PeerId): number {
    return this.outbound.get(peer.toString())?.length ?? 0;
  }

  /**
   * Queues `frame` for `peer`. Returns false (and counts) when the frame has the wrong size,
   * the neighbour's queue is full, or its last dial failed less than `redialBackoffMs` ago.
   * Never throws for network reasons; a failed dial drops
   * the queued frames (counted as unreachable).
   */
  send(peer: PeerId, frame: Uint8Array): boolean {
    if (frame.length !== this.packetSize) {
      this.counters.droppedWrongSizeOut++;
      return false;
    }
    if (this.stopping) {
      this.counters.droppedUnreachable++;
      return false;
    }
    const key = peer.toString();
    let ob = this.outbound.get(key);
    if (ob === undefined) {
      ob = new Outbound(peer);
      this.outbound.set(key, ob);
    }
    if (ob.downUntil > 0 && performance.now() < ob.downUntil) {
      this.counters.droppedUnreachable++;
      return false;
    }
    if (ob.length >= this.maxQueue) {
      this.counters.droppedQueueFull++;
      return false;
    }
    ob.queue.push(frame);
    if (!ob.running) void this.pump(ob);
    return true;
  }

  /** Resolves once everything queued for `peer` so far was handed to the stream (or dropped). */
  flushed(peer: PeerId): Promise<void> {
    const ob = this.outbound.get(peer.toString());
    if (ob === undefined || (ob.length === 0 && !ob.running)) return Promise.resolve();
    return new Promise((resolve) => ob.waiters.push(resolve));
  }

  private async openStream(ob: Outbound): Promise<Stream> {
    if (ob.stream !== null && ob.stream.status === 'open' && ob.stream.writeStatus === 'writable') return ob.stream;
    ob.stream = null;
    this.counters.dials++;
    const stream = await this.openTo(ob.peer, SPHINX_PROTOCOL);
    // We never read from an outbound stream; the remote never writes to it.
    stream.addEventListener('close', () => {
      if (ob.stream === stream) ob.stream = null;
    });
    ob.stream = stream;
    return stream;
  }

  private async pump(ob: Outbound): Promise<void> {
    ob.running = true;
    try {
      while (ob.length > 0 && !this.stopping) {
        let stream: Stream;
        try {
          stream = await this.openStream(ob);
          ob.downUntil = 0;
        } catch (err) {
          this.counters.dialFailures++;
          ob.downUntil = performance.now() + (this.opts.redialBackoffMs ?? 1000);
          const n = ob.clear();
          this.counters.droppedUnreachable += n;
          this.log.warn({ peer: ob.peer.toString(), dropped: n, err: String(err) }, 'link: dial failed, queued frames dropped');
          break;
        }
        const batch = ob.take(this.maxBatch);
        try {
          const ok = stream.send(encodeFrames(batch));
          for (const f of batch) {
            this.counters.framesOut++;
            this.counters.bytesOut += f.length;
            this.opts.observe?.('out', f, ob.peer);
            this.capture?.record(SPHINX_PROTOCOL, 'out', ob.peer.toString(), f.length);
          }
          if (!ok) await stream.onDrain();
        } catch (err) {
          this.counters.droppedUnreachable += batch.length;
          if (ob.stream === stream) ob.stream = null;
          this.log.debug({ peer: ob.peer.toString(), err: String(err) }, 'link: stream write failed');
        }
        if (ob.length === 0) ob.settle();
      }
    } finally {
      ob.running = false;
      ob.settle();
    }
  }

  private onInboundStream(stream: Stream, conn: Connection): void {
    const peer = conn.remotePeer;
    if (!this.admits(peer, true) || this.stopping) {
      this.counters.streamsRefused++;
      stream.abort(new Error('peer not allowed'));
      return;
    }
    this.inboundStreams.add(stream);
    halfWindowUpdates(stream);
    let pending = 0;
    let paused = false;
    const resumeAt = Math.floor(this.maxPending / 2);
    const settled = (): void => {
      pending--;
      if (paused && pending <= resumeAt) {
        paused = false;
        stream.resume();
      }
    };
    const onError = (err: unknown): void => {
      this.log.warn({ peer: peer.toString(), err: String(err) }, 'link: frame handler failed');
    };
    const decoder = new FrameDecoder(
      () => this.packetSize,
      {
        frame: (frame) => {
          this.counters.framesIn++;
          this.counters.bytesIn += frame.length;
          this.opts.observe?.('in', frame, peer);
          this.capture?.record(SPHINX_PROTOCOL, 'in', peer.toString(), frame.length, frame);
          let r: void | Promise<void>;
          try {
            r = this.opts.onFrame(frame, peer);
          } catch (err) {
            onError(err);
            return;
          }
          if (r !== undefined) {
            pending++;
            r.then(settled, (err: unknown) => {
              onError(err);
              settled();
            });
            if (!paused && pending >= this.maxPending) {
              paused = true;
              this.counters.inboundPauses++;
              stream.pause();
            }
          }
        },
        wrongSize: (len) => {
          this.counters.droppedWrongSizeIn++;
          this.capture?.record(SPHINX_PROTOCOL, 'in', peer.toString(), len);
          this.log.debug({ peer: peer.toString(), len }, 'link: wrong-size frame dropped');
        },
      },
      { views: this.opts.viewFrames === true },
    );
    decodeStream(stream, decoder, (err) => {
      if (err instanceof FramingError) this.counters.streamsAbortedBadPrefix++;
      this.log.debug({ peer: peer.toString(), err: String(err) }, 'link: inbound stream aborted');
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    });
    stream.addEventListener('close', () => {
      this.inboundStreams.delete(stream);
    });
  }

  /**
   * Serves another protocol on this link: `accept` is called for every inbound stream from an
   * admitted peer and says what to do with its frames. Register before peers dial it.
   */
  async handle(protocol: string, o: ProtocolOptions, accept: (stream: FrameStream) => FrameStreamHandlers): Promise<void> {
    if (protocol === SPHINX_PROTOCOL) throw new Error(`${SPHINX_PROTOCOL} is the link's own protocol`);
    await this.libp2p.handle(
      protocol,
      (stream, conn) => {
        if (!this.admits(conn.remotePeer, true) || this.stopping) {
          this.counters.streamsRefused++;
          stream.abort(new Error('peer not allowed'));
          return;
        }
        const fs = this.frameStream(protocol, stream, conn.remotePeer);
        let handlers: FrameStreamHandlers;
        try {
          handlers = accept(fs.stream);
        } catch (err) {
          this.log.warn({ protocol, err: String(err) }, 'link: stream handler failed');
          stream.abort(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        fs.read(handlers);
      },
      { maxInboundStreams: o.maxInboundStreams ?? 4, maxOutboundStreams: o.maxOutboundStreams ?? 4 },
    );
  }

  /**
   * Opens a stream of `protocol` to `peer` (dialled at `addressesOf(peer)`), subject to the same
   * admission as packets. Rejects when the peer cannot be reached or refuses the protocol.
   */
  async dial(protocol: string, peer: PeerId, handlers: FrameStreamHandlers): Promise<FrameStream> {
    if (protocol === SPHINX_PROTOCOL) throw new Error(`${SPHINX_PROTOCOL} is the link's own protocol; use send`);
    if (this.stopping) throw new Error('link stopping');
    this.counters.dials++;
    let stream: Stream;
    try {
      stream = await this.openTo(peer, protocol);
    } catch (err) {
      this.counters.dialFailures++;
      throw err;
    }
    const fs = this.frameStream(protocol, stream, peer);
    fs.read(handlers);
    return fs.stream;
  }

  /**
   * A stream of `protocol` to `peer` and to no one else: every address is dialled with
   * `/p2p/<peer>` (an address naming another peer is skipped), so Noise refuses a node that
   * answers there with another key, and the connection's authenticated remote peer is checked
   * once more before a stream is opened on it (a connection libp2p reuses, or an address
   * without the suffix that slipped through). Whoever sits at a node's address (a hijacked IP,
   * an on-path attacker, another node of the document) gets no stream: the mailbox id a client
   * subscribes with is a read capability, and its packets are for that node's key only.
   */
  private async openTo(peer: PeerId, protocol: string): Promise<Stream> {
    const want = peer.toString();
    const addrs = (this.opts.addressesOf?.(peer) ?? []).flatMap((a) => {
      const named = a.getComponents().filter((c) => c.name === 'p2p');
      if (named.length === 0) return [a.encapsulate(`/p2p/${want}`)];
      return named.every((c) => c.value === want) ? [a] : [];
    });
    const conn = await this.libp2p.dial(addrs.length > 0 ? addrs : peer);
    if (!conn.remotePeer.equals(peer)) {
      this.counters.wrongPeer++;
      conn.abort(new Error('not the peer dialled'));
      throw new Error(`link: ${conn.remotePeer.toString()} answered for ${want}; refused`);
    }
    return conn.newStream(protocol);
  }

  /** A FrameStream over a libp2p stream; `read` starts decoding inbound frames. */
  private frameStream(protocol: string, stream: Stream, peer: PeerId): { stream: FrameStream; read: (h: FrameStreamHandlers) => void } {
    const peerStr = peer.toString();
    const ended = new Promise<void>((resolve) => stream.addEventListener('close', () => resolve(), { once: true }));
    const abort = (reason: string): void => {
      try {
        stream.abort(new Error(reason));
      } catch {
        /* already closed */
      }
    };
    const fs: FrameStream = {
      protocol,
      peer,
      ended,
      abort,
      send: (frame) => {
        if (stream.status !== 'open' || stream.writeStatus !== 'writable') return false;
        try {
          stream.send(encodeFrame(frame));
        } catch {
          return false;
        }
        this.capture?.record(protocol, 'out', peerStr, frame.length);
        return true;
      },
    };
    const read = (h: FrameStreamHandlers): void => {
      const bad = (why: string): void => {
        this.counters.streamsAbortedBadFrame++;
        this.log.debug({ protocol, peer: peerStr, why }, 'link: stream ended for a bad frame');
        abort(why);
      };
      const decoder = new FrameDecoder(h.frameSize, {
        frame: (frame) => {
          this.capture?.record(protocol, 'in', peerStr, frame.length);
          try {
            h.onFrame(frame);
          } catch (err) {
            this.log.warn({ protocol, peer: peerStr, err: String(err) }, 'link: frame handler failed');
          }
        },
        wrongSize: (len) => {
          this.capture?.record(protocol, 'in', peerStr, len);
          throw new FramingError(`a ${len}-byte frame, expected ${h.frameSize()}`);
        },
      });
      decodeStream(stream, decoder, (err) => bad(String(err)));
    };
    return { stream: fs, read };
  }

  /** Open connections (to `peer`, or all) and the protocols of their streams: for tests and diagnostics. */
  connections(peer?: PeerId): { direction: 'inbound' | 'outbound'; protocols: string[] }[] {
    return (this.node?.getConnections(peer) ?? []).map((c) => ({ direction: c.direction, protocols: c.streams.map((s) => s.protocol ?? '') }));
  }

  /** Open inbound packet streams (for tests and metrics). */
  get inboundStreamCount(): number {
    return this.inboundStreams.size;
  }

  /** Total open connections. */
  get connectionCount(): number {
    return this.node?.getConnections().length ?? 0;
  }

  /**
   * Stops accepting frames, tries to write what is queued within `graceMs`, then closes all
   * connections and stops libp2p.
   */
  async stop(graceMs = 1000): Promise<void> {
    if (this.node === null) return;
    const flushes = [...this.outbound.values()].map((ob) => this.flushed(ob.peer));
    await Promise.race([Promise.all(flushes), new Promise((r) => setTimeout(r, graceMs).unref())]);
    this.stopping = true;
    for (const ob of this.outbound.values()) {
      this.counters.droppedUnreachable += ob.clear();
      ob.settle();
    }
    const node = this.node;
    this.node = null;
    await node.stop();
    this.capture?.close();
    this.log.info({}, 'link: stopped');
  }
}

/** The fields of a YamuxStream (@chainsafe/libp2p-yamux 8) its window updates read; private in its types. */
interface YamuxWindow {
  state: StreamState;
  recvWindow: number;
  recvWindowCapacity: number;
  sendWindowUpdate(): void;
}

/**
 * Window updates on an inbound packet stream once half its receive window is used, as
 * hashicorp/yamux (the reference implementation) sends them, instead of one after every data
 * frame received (@chainsafe/libp2p-yamux 8): under load that was one more Noise message and
 * socket write per inbound data frame of ~20-30 packets, each write also waking the sender.
 * Flow control is unchanged: the sender is stopped only once it has used its whole window, by
 * then more than half of it has arrived here and the update has gone out; a paused stream
 * (backpressure) still sends none, and the flags of a stream being opened or closed still go out
 * at once. Any other stream (another protocol, another muxer) is left as it is.
 */
function halfWindowUpdates(stream: Stream): void {
  if (!(stream instanceof YamuxStream)) return;
  const w = stream as unknown as YamuxWindow;
  const send = w.sendWindowUpdate.bind(stream);
  w.sendWindowUpdate = () => {
    if (w.state === StreamState.Established && w.recvWindowCapacity * 2 >= w.recvWindow) return;
    send();
  };
}

/** Feeds what arrives on `stream` to `decoder` (`onError`: what it threw); closes our side when the remote closes its. */
function decodeStream(stream: Stream, decoder: FrameDecoder, onError: (err: unknown) => void): void {
  stream.addEventListener('message', (evt: StreamMessageEvent) => {
    try {
      const data = evt.data;
      if (data instanceof Uint8Array) decoder.push(data);
      else for (const chunk of data) decoder.push(chunk);
    } catch (err) {
      onError(err);
    }
  });
  stream.addEventListener('remoteCloseWrite', () => {
    void stream.close().catch(() => {});
  });
}

/** Parses a multiaddr string (re-exported so callers need not import @multiformats/multiaddr). */
export function parseMultiaddr(s: string): Multiaddr {
  return multiaddr(s);
}
