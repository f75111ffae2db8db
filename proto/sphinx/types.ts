/** Public types of the Sphinx packet layer (docs/spec/sphinx.md). */

/** 32-byte node id (SHA-256 of the node's Ed25519 identity key; see docs/spec/pki.md). */
export type NodeId = Uint8Array;

/** One hop of a route as the sender sees it. */
export interface RouteHop {
  readonly nodeId: NodeId;
  /** The hop's X25519 Sphinx public key for the epoch the packet is built in. */
  readonly publicKey: Uint8Array;
  /** How long this hop must hold the packet before forwarding/delivering it, in ms (u32). */
  readonly delayMs: number;
}

/** What the final hop of a route is told to do. */
export type Terminal =
  /** Hand the payload to the local queue `queueId` (a gateway's mail intake, a client's ACK mailbox). */
  | { readonly kind: 'deliver'; readonly queueId: Uint8Array }
  /** Drop cover: the final hop discards the packet. */
  | { readonly kind: 'drop' };

/** Why a hop refused a packet. A refused packet is dropped silently and counted by reason. */
export type SphinxDropReason = 'bad-length' | 'bad-version' | 'bad-group-element' | 'replay' | 'bad-mac' | 'bad-commands' | 'bad-payload';

export const SPHINX_DROP_REASONS: readonly SphinxDropReason[] = [
  'bad-length',
  'bad-version',
  'bad-group-element',
  'replay',
  'bad-mac',
  'bad-commands',
  'bad-payload',
];

interface HopOk {
  readonly ok: true;
  /** The replay tag the hop derived; the caller records it (its store is the caller's). */
  readonly replayTag: Uint8Array;
  /** The delay the header named for this hop, in ms (0 when it named none). */
  readonly delayMs: number;
}

/** Relay the re-encrypted `packet` to `next` after `delayMs`. */
export interface HopForward extends HopOk {
  readonly kind: 'forward';
  readonly next: NodeId;
  readonly packet: Uint8Array;
}

/** This hop is the last one: hand `payload` to queue `queueId`. */
export interface HopDeliver extends HopOk {
  readonly kind: 'deliver';
  readonly queueId: Uint8Array;
  /**
   * Present when the packet is a reply sent with a SURB: `payload` is then still encrypted
   * for the SURB's creator, who opens it with the keys it kept under this id.
   */
  readonly surbId?: Uint8Array;
  /** For a forward packet: the plaintext (zero prefix checked and removed). */
  readonly payload: Uint8Array;
}

/** Drop cover arrived at its last hop. */
export interface HopDrop extends HopOk {
  readonly kind: 'drop';
}

export interface HopError {
  readonly ok: false;
  readonly reason: SphinxDropReason;
}

export type HopResult = HopForward | HopDeliver | HopDrop | HopError;
