/**
 * The fixed shape of every Sphinx packet in one network. The network document carries it, so
 * every hop agrees on the frame size; nothing in a packet says how long its route is.
 * docs/spec/sphinx.md §2 defines each field.
 */
export interface Geometry {
  /** Maximum number of hops a route may have (r in the spec). */
  readonly maxHops: number;
  /** Bytes of routing commands per hop, including the next hop's MAC (s in the spec). */
  readonly perHopSize: number;
  /** Application payload bytes a packet carries (the Lioness block adds the zero prefix). */
  readonly payloadSize: number;
}

/** Version byte at the start of every header; a hop rejects any other value. */
export const SPHINX_VERSION = 1;
/** Bytes of the header's additional data: version, reserved (0). */
export const AD_LENGTH = 2;
export const GROUP_ELEMENT_LENGTH = 32;
export const MAC_LENGTH = 16;
export const NODE_ID_LENGTH = 32;
export const QUEUE_ID_LENGTH = 32;
export const SURB_ID_LENGTH = 16;
/** Zero bytes prepended to the payload before layered encryption; the final hop checks them. */
export const PAYLOAD_TAG_LENGTH = 16;
export const LIONESS_KEY_LENGTH = 128;
export const REPLAY_TAG_LENGTH = 32;
/** Smallest per-hop slot that fits the largest legal command set (Deliver + SurbReply + Delay). */
export const MIN_PER_HOP_SIZE = 55;
export const MAX_PAYLOAD_SIZE = 32 * 1024;
export const MIN_PAYLOAD_SIZE = 64;

export const DEFAULT_GEOMETRY: Geometry = Object.freeze({
  maxHops: 5,
  perHopSize: 64,
  payloadSize: 2048,
});

/** Sizes that follow from a geometry. */
export interface PacketSizes {
  readonly routingInfo: number;
  readonly header: number;
  readonly payload: number;
  readonly packet: number;
  readonly surb: number;
}

export function packetSizes(g: Geometry): PacketSizes {
  const routingInfo = g.maxHops * g.perHopSize;
  const header = AD_LENGTH + GROUP_ELEMENT_LENGTH + routingInfo + MAC_LENGTH;
  const payload = PAYLOAD_TAG_LENGTH + g.payloadSize;
  return {
    routingInfo,
    header,
    payload,
    packet: header + payload,
    surb: NODE_ID_LENGTH + header + 32,
  };
}

export class GeometryError extends Error {
  override readonly name = 'GeometryError';
}

/** Throws GeometryError with a message an operator can act on. */
export function validateGeometry(g: Geometry): Geometry {
  const int = (v: number) => Number.isInteger(v);
  if (!int(g.maxHops) || g.maxHops < 1 || g.maxHops > 16) throw new GeometryError(`maxHops must be an integer in 1..16, got ${g.maxHops}`);
  if (!int(g.perHopSize) || g.perHopSize < MIN_PER_HOP_SIZE || g.perHopSize > 1024)
    throw new GeometryError(`perHopSize must be an integer in ${MIN_PER_HOP_SIZE}..1024, got ${g.perHopSize}`);
  if (!int(g.payloadSize) || g.payloadSize < MIN_PAYLOAD_SIZE || g.payloadSize > MAX_PAYLOAD_SIZE)
    throw new GeometryError(`payloadSize must be an integer in ${MIN_PAYLOAD_SIZE}..${MAX_PAYLOAD_SIZE}, got ${g.payloadSize}`);
  return g;
}
